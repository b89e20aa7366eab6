package imager

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// In-memory trees for the FAT and symlink tests, built entry by entry
// (memTree, in testhelpers_test.go, builds a tree from files with git's
// tree ids; these need synthetic big blobs and entries of any kind).

// fmem is an in-memory tree under construction plus its blobs.
type fmem struct {
	entries []Entry
	blobs   fblobs
}

// fblobs is a BlobReader over in-memory contents and synthetic blobs.
type fblobs struct {
	data  memBlobs
	synth map[BlobID]int64 // synthetic blob: size; byte at off is synthByte(id, off)
}

var _ BlobReader = fblobs{}

func newFmem() *fmem {
	return &fmem{blobs: fblobs{data: memBlobs{}, synth: map[BlobID]int64{}}}
}

// gitBlobID is git's object id of a blob with content p.
func gitBlobID(p []byte) BlobID { return gitObjectID("blob", p) }

func (m *fmem) file(p, content string) *fmem { return m.add(p, KindFile, []byte(content)) }
func (m *fmem) exe(p, content string) *fmem  { return m.add(p, KindExecutable, []byte(content)) }
func (m *fmem) link(p, target string) *fmem {
	m.add(p, KindSymlink, []byte(target))
	m.entries[len(m.entries)-1].Target = target
	return m
}
func (m *fmem) dir(p string) *fmem {
	m.entries = append(m.entries, Entry{Path: p, Kind: KindDir})
	return m
}
func (m *fmem) sub(p string) *fmem {
	m.entries = append(m.entries, Entry{Path: p, Kind: KindSubmodule, Blob: BlobID{1, 2, 3}})
	return m
}

func (m *fmem) add(p string, k Kind, content []byte) *fmem {
	id := gitBlobID(content)
	m.blobs.data[id] = content
	m.entries = append(m.entries, Entry{Path: p, Kind: k, Size: int64(len(content)), Blob: id})
	return m
}

// synthFile adds a file of size bytes whose content is synthetic (never
// stored): the n-th such file gets a distinct id.
func (m *fmem) synthFile(p string, size int64) *fmem {
	var id BlobID
	copy(id[:], "synthetic")
	id[16], id[17], id[18], id[19] = byte(len(m.blobs.synth)>>24), byte(len(m.blobs.synth)>>16), byte(len(m.blobs.synth)>>8), byte(len(m.blobs.synth))
	m.blobs.synth[id] = size
	m.entries = append(m.entries, Entry{Path: p, Kind: KindFile, Size: size, Blob: id})
	return m
}

// synthByte is the deterministic content of synthetic blobs.
func synthByte(id BlobID, off int64) byte {
	x := uint64(off)*0x9E3779B97F4A7C15 + uint64(id[19])*0x100000001B3
	return byte(x>>56) ^ byte(off)
}

func (b fblobs) ReadBlob(id BlobID, p []byte, off int64) (int, error) {
	if _, ok := b.data[id]; ok {
		return b.data.ReadBlob(id, p, off)
	}
	size, ok := b.synth[id]
	if !ok {
		return 0, fmt.Errorf("no blob %s", id)
	}
	if off >= size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > size-off {
		n = int(size - off)
	}
	for i := 0; i < n; i++ {
		p[i] = synthByte(id, off+int64(i))
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// gitOrderKey is a path's sort key in git's depth-first tree order: every
// directory component followed by "/".
func gitOrderKey(e Entry) string {
	if e.Kind == KindDir {
		return e.Path + "/"
	}
	return e.Path
}

// tree returns the tree, with missing parent directories added, in git's
// order (computed here independently of the code under test).
func (m *fmem) tree() *Tree {
	seen := map[string]bool{}
	var es []Entry
	for _, e := range m.entries {
		seen[e.Path] = true
	}
	es = append(es, m.entries...)
	for _, e := range m.entries {
		parts := strings.Split(e.Path, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/")
			if !seen[d] {
				seen[d] = true
				es = append(es, Entry{Path: d, Kind: KindDir})
			}
		}
	}
	sortGitOrder(es)
	return &Tree{CommitID: "0123456789abcdef0123456789abcdef01234567", Time: time.Date(2024, 3, 5, 14, 7, 31, 0, time.UTC), Entries: es}
}

func sortGitOrder(es []Entry) {
	sort.Slice(es, func(i, j int) bool { return gitOrderKey(es[i]) < gitOrderKey(es[j]) })
}
