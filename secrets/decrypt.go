// Package secrets serves age-encrypted files of a tree decrypted: every
// file NAME.age becomes NAME, with the plaintext as its content.
//
// Decrypt is a transform from (imager.Tree, imager.BlobReader) to the same
// pair, run when an image is built. It decrypts every .age file whole
// before anything is served: age authenticates its payload chunk by chunk,
// so only a full decryption proves a file good, and a file that does not
// decrypt, does not fit the caps, or would shadow a plain file of the same
// name makes the whole export unavailable (Decrypt fails, naming the path):
// ciphertext is never served in a plain file's place.
//
// Plaintext never reaches a disk: it is held in an anonymous mapping,
// locked against swapping when RLIMIT_MEMLOCK allows, kept out of core
// dumps, and served from there, never through the repository's blob
// cache (which spills big blobs to files). Its size is bounded per file
// and, through a Budget, across every decrypted tree at once; Release
// zeroes and frees it. Pool keeps a decrypted image only while a
// connection holds it.
//
// The bytes served are a pure function of (tree, identity): decrypted
// contents get ids derived from their ciphertext's git id under a key
// taken from the identity (see Identity), which cannot be mistaken for a
// git blob id of the same tree (Decrypt checks). The payload is decrypted
// chunk by chunk straight into the locked mapping (stream.go), so no copy
// of the plaintext is left on the Go heap.
package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/gitblk/gitblk/imager"
)

// Suffix marks an encrypted file.
const Suffix = ".age"

// Sentinel errors; Decrypt wraps them with the path at fault.
var (
	ErrDecrypt  = errors.New("secrets: cannot decrypt")
	ErrTooLarge = errors.New("secrets: decrypted file larger than the cap")
	ErrMemory   = errors.New("secrets: decrypted bytes would exceed the memory cap")
	ErrConflict = errors.New("secrets: encrypted file beside a plain file of its decrypted name")
	ErrReleased = errors.New("secrets: decrypted tree released")
)

// Sizes of the age format (age-encryption.org/v1): a 16-byte nonce, then
// STREAM chunks of 64 KiB plaintext each with a 16-byte tag.
const (
	ageNonceSize = 16
	ageChunkSize = 64 << 10
	ageTagSize   = 16
	// maxHeader bounds the header a file may carry: an X25519 stanza is
	// about 100 bytes, so this allows hundreds of recipients.
	maxHeader = 64 << 10
)

// maxCiphertext is the largest encrypted size whose plaintext can fit in
// maxPlain bytes: anything bigger is refused before it is read.
func maxCiphertext(maxPlain int64) int64 {
	chunks := maxPlain/ageChunkSize + 1
	return maxHeader + ageNonceSize + maxPlain + chunks*ageTagSize
}

// Budget bounds decrypted bytes held at once across trees. Safe for
// concurrent use.
type Budget struct {
	mu   sync.Mutex
	max  int64
	used int64
}

// NewBudget returns a budget of max bytes.
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// SetMax changes the bound; bytes held beyond it stay until released.
func (b *Budget) SetMax(max int64) {
	b.mu.Lock()
	b.max = max
	b.mu.Unlock()
}

// Used returns the bytes held now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

func (b *Budget) reserve(n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.max-b.used {
		return fmt.Errorf("%w: %d bytes wanted, %d of %d in use", ErrMemory, n, b.used, b.max)
	}
	b.used += n
	return nil
}

func (b *Budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// Options bound a decryption.
type Options struct {
	MaxFile int64   // bytes of one decrypted file
	Budget  *Budget // shared bound on bytes held; required
}

// Decrypted is a tree whose .age files are decrypted: Tree lists them
// under their plain names, and ReadBlob serves their plaintext from
// locked memory and every other blob from the original reader. Safe for
// concurrent use until Release.
type Decrypted struct {
	Tree *imager.Tree

	blobs  imager.BlobReader
	budget *Budget
	mem    *lockedMem
	size   int64 // bytes reserved from budget
	files  int

	mu       sync.RWMutex
	plain    map[imager.BlobID][]byte // slices of mem
	released bool
}

var _ imager.BlobReader = (*Decrypted)(nil)

// Files returns how many files were decrypted.
func (d *Decrypted) Files() int { return d.files }

// Bytes returns the plaintext bytes held.
func (d *Decrypted) Bytes() int64 { return d.size }

// Locked reports whether the plaintext is locked in memory (not
// swappable); false when RLIMIT_MEMLOCK is too small for it.
func (d *Decrypted) Locked() bool { return d.mem == nil || d.mem.locked }

// ReadBlob reads a decrypted file's plaintext, or any other blob from the
// tree's own reader.
func (d *Decrypted) ReadBlob(id imager.BlobID, p []byte, off int64) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.released {
		return 0, ErrReleased
	}
	if b, ok := d.plain[id]; ok {
		if off < 0 {
			return 0, fmt.Errorf("secrets: negative offset %d", off)
		}
		var n int
		var err error
		withPlaintextInRegisters(func() { n, err = bytes.NewReader(b).ReadAt(p, off) })
		return n, err
	}
	return d.blobs.ReadBlob(id, p, off)
}

// Release zeroes and frees the plaintext and returns its bytes to the
// budget. Reads after Release fail with ErrReleased. Idempotent.
func (d *Decrypted) Release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.released {
		return
	}
	d.released = true
	d.plain = nil
	d.mem.free()
	if d.size > 0 {
		d.budget.release(d.size)
	}
}

// blobAt reads one blob as an io.ReaderAt.
type blobAt struct {
	blobs imager.BlobReader
	id    imager.BlobID
}

func (b blobAt) ReadAt(p []byte, off int64) (int, error) { return b.blobs.ReadBlob(b.id, p, off) }

// secretFile is one .age entry being decrypted.
type secretFile struct {
	index   int // in the tree's entries
	plain   string
	payload *agePayload
	src     io.ReaderAt // the ciphertext
	size    int64
}

// Decrypt decrypts every NAME.age file (regular or executable) of tree
// with id, reading ciphertext through blobs. It fails, naming the path,
// if any file does not decrypt or exceeds opts.MaxFile, if NAME.age lies
// beside an entry NAME, or if the plaintext would exceed the budget.
func Decrypt(tree *imager.Tree, blobs imager.BlobReader, id *Identity, opts Options) (*Decrypted, error) {
	if opts.Budget == nil {
		return nil, errors.New("secrets: Decrypt needs a Budget")
	}
	paths := make(map[string]bool, len(tree.Entries))
	for _, e := range tree.Entries {
		paths[e.Path] = true
	}
	var files []secretFile
	var total int64
	for i, e := range tree.Entries {
		if (e.Kind != imager.KindFile && e.Kind != imager.KindExecutable) || !strings.HasSuffix(e.Path, Suffix) {
			continue
		}
		plain := strings.TrimSuffix(e.Path, Suffix)
		if plain == "" || strings.HasSuffix(plain, "/") {
			return nil, fmt.Errorf("%w: %s: a file named %s has no plain name", ErrDecrypt, e.Path, Suffix)
		}
		if paths[plain] {
			return nil, fmt.Errorf("%w: %s beside %s", ErrConflict, e.Path, plain)
		}
		if e.Size > maxCiphertext(opts.MaxFile) {
			return nil, fmt.Errorf("%w: %s: %d encrypted bytes, over the cap of %d decrypted", ErrTooLarge, e.Path, e.Size, opts.MaxFile)
		}
		src := blobAt{blobs, e.Blob}
		p, err := openAge(src, e.Size, id)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrDecrypt, e.Path, err)
		}
		size := p.plain
		if size > opts.MaxFile {
			return nil, fmt.Errorf("%w: %s: %d bytes, cap %d", ErrTooLarge, e.Path, size, opts.MaxFile)
		}
		files = append(files, secretFile{index: i, plain: plain, payload: p, src: src, size: size})
		total += size
	}
	d := &Decrypted{blobs: blobs, budget: opts.Budget, plain: map[imager.BlobID][]byte{}, files: len(files)}
	if len(files) == 0 {
		d.Tree = tree
		return d, nil
	}
	if err := opts.Budget.reserve(total); err != nil {
		return nil, err
	}
	d.size = total
	ok := false
	defer func() {
		if !ok {
			d.Release()
		}
	}()
	if total > 0 {
		var err error
		if d.mem, err = allocLocked(int(total)); err != nil {
			return nil, err
		}
	}
	// Decrypt whole into the mapping: every chunk is authenticated here,
	// before a byte is served.
	entries := make([]imager.Entry, len(tree.Entries))
	copy(entries, tree.Entries)
	gitIDs := make(map[imager.BlobID]bool, len(entries))
	for _, e := range entries {
		gitIDs[e.Blob] = true
	}
	var off int64
	for _, f := range files {
		e := &entries[f.index]
		buf := d.mem.slice(off, f.size)
		off += f.size
		if err := f.payload.decryptInto(buf, f.src); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrDecrypt, e.Path, err)
		}
		cid := imager.BlobID(id.contentID(e.Blob))
		if gitIDs[cid] {
			return nil, fmt.Errorf("%w: %s: decrypted content id %s equals a git object id of the tree", ErrDecrypt, e.Path, cid)
		}
		d.plain[cid] = buf
		e.Path, e.Size, e.Blob = f.plain, f.size, cid
	}
	if d.mem != nil {
		d.mem.seal()
	}
	ordered := gitOrder(entries)
	if len(ordered) != len(entries) {
		return nil, fmt.Errorf("secrets: tree lists entries outside its directories")
	}
	d.Tree = &imager.Tree{CommitID: tree.CommitID, Time: tree.Time, Entries: ordered}
	ok = true
	return d, nil
}

// slice returns n bytes of the mapping at off (nil for n == 0).
func (m *lockedMem) slice(off, n int64) []byte {
	if n == 0 {
		return nil
	}
	return m.b[off : off+n : off+n]
}

// gitOrder puts entries back in git's tree order after renames: depth
// first, a directory before its contents, siblings sorted by name with a
// directory's name compared as if it ended in "/".
func gitOrder(entries []imager.Entry) []imager.Entry {
	children := map[string][]int{}
	for i, e := range entries {
		dir := path.Dir(e.Path)
		if dir == "." {
			dir = ""
		}
		children[dir] = append(children[dir], i)
	}
	key := func(i int) string {
		name := path.Base(entries[i].Path)
		if entries[i].Kind == imager.KindDir {
			return name + "/"
		}
		return name
	}
	for _, c := range children {
		sort.SliceStable(c, func(a, b int) bool { return key(c[a]) < key(c[b]) })
	}
	out := make([]imager.Entry, 0, len(entries))
	var walk func(dir string)
	walk = func(dir string) {
		for _, i := range children[dir] {
			out = append(out, entries[i])
			if entries[i].Kind == imager.KindDir {
				walk(entries[i].Path)
			}
		}
	}
	walk("")
	return out
}
