package imager

import (
	"archive/tar"
	"bytes"
	"io"
	"math/rand"
	"testing"
)

// FuzzTar builds tar images of random trees (from the seeded generator) and
// checks invariants that need no external tool: BuildTar does not fail or
// panic, the size is a multiple of 4096, everything after the archive is
// zeros, and archive/tar reads back every entry in order with its kind,
// mode, content and link target. Run longer with
// `go test -run NONE -fuzz FuzzTar ./imager/`.
func FuzzTar(f *testing.F) {
	for seed := int64(0); seed < 8; seed++ {
		f.Add(seed, uint8(seed*5), uint8(seed%4))
	}
	f.Fuzz(func(t *testing.T, seed int64, n uint8, symlinks uint8) {
		files := randomFiles(rand.New(rand.NewSource(seed)), int(n%48)+1)
		commit := ""
		if seed%2 == 0 {
			commit = "0123456789abcdef0123456789abcdef01234567"
		}
		tree, blobs := memTree(t, files, commit, testTime)
		mode := []SymlinkMode{SymlinksDefault, SymlinksKeep, SymlinksFollow, SymlinksSkip}[symlinks%4]
		l, warns, err := BuildTar(tree, blobs, Options{Symlinks: mode})
		if err != nil {
			t.Fatalf("BuildTar: %v", err)
		}
		if l.Size()%SectorAlign != 0 {
			t.Fatalf("size %d is not a multiple of %d", l.Size(), SectorAlign)
		}
		img := readImage(t, l)
		// The entries the image should hold: the tree after the symlink
		// mode, as BuildTar saw it.
		want := tree
		switch mode {
		case SymlinksFollow:
			want, _ = FollowSymlinks(tree)
		case SymlinksSkip:
			want, _ = SkipSymlinks(tree)
		}
		for _, w := range warns {
			if w.Path == "" || w.Msg == "" {
				t.Errorf("empty warning %+v", w)
			}
		}

		cr := &countingReader{r: bytes.NewReader(img)}
		tr := tar.NewReader(cr)
		i := 0
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("archive/tar after %d entries: %v", i, err)
			}
			if h.Typeflag == tar.TypeXGlobalHeader {
				if i != 0 || h.PAXRecords["comment"] != commit {
					t.Fatalf("global header at entry %d with %v", i, h.PAXRecords)
				}
				continue
			}
			if i >= len(want.Entries) {
				t.Fatalf("extra entry %q", h.Name)
			}
			e := want.Entries[i]
			i++
			name, typ, perm := e.Path, byte(tar.TypeReg), int64(0o664)
			switch e.Kind {
			case KindExecutable:
				perm = 0o775
			case KindDir, KindSubmodule:
				name, typ, perm = name+"/", tar.TypeDir, 0o775
			case KindSymlink:
				typ, perm = tar.TypeSymlink, 0o777
			}
			if h.Name != name || h.Typeflag != typ || h.Mode != perm || !h.ModTime.Equal(testTime) {
				t.Fatalf("entry %d: got %q type %c mode %o time %v; want %q type %c mode %o",
					i, h.Name, h.Typeflag, h.Mode, h.ModTime, name, typ, perm)
			}
			if e.Kind == KindSymlink && h.Linkname != e.Target {
				t.Fatalf("%s: link target %q, want %q", e.Path, h.Linkname, e.Target)
			}
			got, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("%s: %v", e.Path, err)
			}
			var content []byte
			if e.Kind == KindFile || e.Kind == KindExecutable {
				content = blobs[e.Blob]
			}
			if !bytes.Equal(got, content) {
				t.Fatalf("%s: %d bytes read back, want %d", e.Path, len(got), len(content))
			}
		}
		if i != len(want.Entries) {
			t.Fatalf("%d entries read back, want %d", i, len(want.Entries))
		}
		// archive/tar stops after the end blocks: the rest is padding.
		if bytes.ContainsFunc(img[cr.n:], func(r rune) bool { return r != 0 }) || int64(len(img))-cr.n >= SectorAlign+tarEndBlocks {
			t.Fatalf("archive/tar consumed %d of %d bytes; the rest must be under 4 KiB of zeros", cr.n, len(img))
		}
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
