package gitfs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/gitblk/gitblk/imager"
)

// A tree listing (every entry's path, kind, size, id and link target) is a
// pure function of the tree id, the export-ignore choice and
// $GIT_DIR/info/attributes. Listing a big tree means reading thousands of
// objects, so listings are kept on disk under the cache directory: a second
// start of `gitblk serve` lays out its image without walking the tree.
//
// A cache file is never trusted: it names its key and ends with a SHA-256
// of its bytes, and anything that does not decode exactly (a torn write,
// another version's format, a file for another key) is ignored and
// rebuilt.

// treeCacheMagic starts every listing file; bump it when the encoding or
// the meaning of a listing changes.
const treeCacheMagic = "gitblk tree listing v2\n"

// treeCacheSubdir is the subdirectory of the cache directory for listings.
const treeCacheSubdir = "trees"

var errTreeCache = errors.New("gitfs: bad tree listing cache file")

// DefaultCacheDir is $XDG_CACHE_HOME/gitblk, else ~/.cache/gitblk, else "".
func DefaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "gitblk")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" && h != "/" {
		return filepath.Join(h, ".cache", "gitblk")
	}
	return ""
}

// buildID names the build that writes a listing, so a listing made by
// another version of gitblk (whose listing rules may differ) is not read:
// the module version and VCS revision Go stamps into the binary.
var buildID = func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	id := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
			id += " " + s.Value
		}
	}
	return id
}()

// treeCacheKey names a listing: tree, export-ignore and the repository's
// info/attributes (which can change what export-ignore drops).
func (r *Repo) treeCacheKey(c *Commit, exportIgnore bool) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\nbuild %s\ntree %s\nexport-ignore %t\n", treeCacheMagic, buildID, c.Tree, exportIgnore)
	if exportIgnore {
		b, err := readInfoAttributes(r.gitDir)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CachedTree is Tree with the listing kept in dir (see above). An empty dir
// means no cache. Cache trouble is never an error: the tree is listed from
// git instead, and a listing that cannot be saved is simply not saved. A
// file that does not check out is logged (Options.Logger) as it is
// rebuilt; one that cannot be rewritten, only the first time.
func (r *Repo) CachedTree(c *Commit, exportIgnore bool, dir string) (*imager.Tree, error) {
	t, save, err := r.cachedTree(c, exportIgnore, dir)
	if err != nil {
		return nil, err
	}
	save()
	return t, nil
}

// cachedTree is CachedTree, but a listing just made is written to the
// cache by save, which the caller calls when it likes (at once, or on
// another goroutine while it lays the tree out); save does nothing when
// there is nothing to write.
func (r *Repo) cachedTree(c *Commit, exportIgnore bool, dir string) (t *imager.Tree, save func(), err error) {
	nothing := func() {}
	if dir == "" {
		t, err := r.Tree(c, exportIgnore)
		return t, nothing, err
	}
	key, err := r.treeCacheKey(c, exportIgnore)
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, treeCacheSubdir, key)
	bad := false
	if b, err := os.ReadFile(path); err == nil {
		ents, err := decodeListing(b, key)
		if err == nil {
			return &imager.Tree{CommitID: c.ID, Time: c.Time, Entries: ents}, nothing, nil
		}
		if _, warned := r.badListings.Load(path); !warned {
			r.log.Warn("tree listing cache file does not check out; listing the tree again", "file", path, "tree", c.Tree, "err", err)
		}
		bad = true
	}
	if t, err = r.Tree(c, exportIgnore); err != nil {
		return nil, nil, err
	}
	save = func() {
		if err := writeFileAtomic(path, func(w io.Writer) error { return writeListing(w, t.Entries, key) }); err != nil && bad {
			r.badListings.Store(path, true)
		} else if err == nil {
			r.badListings.Delete(path)
		}
	}
	return t, save, nil
}

// writeListing writes magic, key, entry count, the entries, then the
// SHA-256 of everything before it, to w through a small buffer. An entry
// is its path as the length of the prefix it shares with the previous
// entry's path and the rest, its kind, its size, its id, and for a
// symlink its target: paths in git's order share most of their bytes with
// the one before.
func writeListing(w io.Writer, ents []imager.Entry, key string) error {
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), listingBuf)
	var b []byte
	b = append(b, treeCacheMagic...)
	b = appendString(b, key)
	b = binary.AppendUvarint(b, uint64(len(ents)))
	prev := ""
	for i := range ents {
		e := &ents[i]
		k := commonPrefix(prev, e.Path)
		b = binary.AppendUvarint(b, uint64(k))
		b = appendString(b, e.Path[k:])
		b = append(b, byte(e.Kind))
		b = binary.AppendUvarint(b, uint64(max(e.Size, 0)))
		b = append(b, e.Blob[:]...)
		if e.Kind == imager.KindSymlink {
			b = appendString(b, e.Target)
		}
		prev = e.Path
		if len(b) >= listingBuf/2 || i == len(ents)-1 {
			if _, err := bw.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	if _, err := bw.Write(b); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(sum.Sum(nil))
	return err
}

// listingBuf is the buffer a listing is written through.
const listingBuf = 64 << 10

// encodeListing is writeListing into memory.
func encodeListing(ents []imager.Entry, key string) []byte {
	var buf bytes.Buffer
	_ = writeListing(&buf, ents, key) // a bytes.Buffer does not fail
	return buf.Bytes()
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// minListedEntry is the fewest bytes an encoded entry takes: no count
// can promise more entries than the file has room for.
const minListedEntry = 1 + 1 + 1 + 1 + hashLen

// decodeListing is the inverse of encodeListing; it checks every field.
// Paths and targets are cut from one string: one allocation for them all.
func decodeListing(b []byte, key string) ([]imager.Entry, error) {
	if len(b) < len(treeCacheMagic)+sha256.Size {
		return nil, errTreeCache
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, errTreeCache
	}
	d := listingDecoder{b: body}
	if string(d.bytes(len(treeCacheMagic))) != treeCacheMagic || string(d.bytes(int(d.uvarint()))) != key {
		return nil, errTreeCache
	}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b))/minListedEntry {
		return nil, errTreeCache
	}
	ents := make([]imager.Entry, n)
	// ends[2i] and ends[2i+1]: where entry i's path and target end in
	// text, which holds each path followed by its target.
	ends := make([]int, 2*n)
	text := make([]byte, 0, len(d.b))
	prevStart, prevEnd := 0, 0
	for i := range ents {
		e := &ents[i]
		k := d.uvarint()
		suffix := d.bytes(int(d.uvarint()))
		e.Kind = imager.Kind(d.byte())
		size := d.uvarint()
		copy(e.Blob[:], d.bytes(len(e.Blob)))
		if d.err != nil || k > uint64(prevEnd-prevStart) || e.Kind > imager.KindDir || size > math.MaxInt64 {
			return nil, errTreeCache
		}
		e.Size = int64(size)
		start := len(text)
		text = append(text, text[prevStart:prevStart+int(k)]...)
		text = append(text, suffix...)
		ends[2*i] = len(text)
		if len(text) == start {
			return nil, errTreeCache
		}
		prevStart, prevEnd = start, len(text)
		if e.Kind == imager.KindSymlink {
			text = append(text, d.bytes(int(d.uvarint()))...)
		}
		ends[2*i+1] = len(text)
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, errTreeCache
	}
	all := string(text)
	at := 0
	for i := range ents {
		ents[i].Path = all[at:ends[2*i]]
		ents[i].Target = all[ends[2*i]:ends[2*i+1]]
		at = ends[2*i+1]
	}
	return ents, nil
}

// listingDecoder reads fields; the first failure sticks in err.
type listingDecoder struct {
	b   []byte
	err error
}

func (d *listingDecoder) bytes(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		d.err = errTreeCache
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *listingDecoder) byte() byte {
	if p := d.bytes(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *listingDecoder) uvarint() uint64 { return decodeVarint(d, binary.Uvarint) }

// decodeVarint decodes one varint with decode (binary.Uvarint or
// binary.Varint).
func decodeVarint[T uint64 | int64](d *listingDecoder, decode func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := decode(d.b)
	if n <= 0 {
		d.err = errTreeCache
		return 0
	}
	d.b = d.b[n:]
	return v
}

// writeFileAtomic writes what write writes to path through a temporary
// file and a rename, so readers see the old file or the whole new one.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	werr := write(f)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		os.Remove(f.Name())
		return errors.Join(werr, cerr)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}
