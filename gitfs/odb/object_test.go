package odb

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestReadObjectDeltasMatchGit: in a repository repacked so that trees
// and commits are deltas of one another (deep chains), every tree,
// commit and small blob ReadObject reads from the packs is what git
// cat-file gives, and asking for the wrong type or a too small limit is
// an error.
func TestReadObjectDeltasMatchGit(t *testing.T) {
	dir := t.TempDir()
	gitIn(t, dir, nil, "init", "-q")
	for _, kv := range [][2]string{{"user.name", "t"}, {"user.email", "t@example.com"}} {
		gitIn(t, dir, nil, "config", kv[0], kv[1])
	}
	for c := 0; c < 40; c++ {
		for f := 0; f < 30; f++ {
			p := filepath.Join(dir, fmt.Sprintf("d%d", f%3), fmt.Sprintf("f%02d", f))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			body := strings.Repeat(fmt.Sprintf("file %d line\n", f), 50)
			if f == c%30 {
				body += fmt.Sprintf("changed in %d\n", c)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		gitIn(t, dir, nil, "add", "-A")
		gitIn(t, dir, nil, "commit", "-q", "-m", fmt.Sprintf("commit %d", c))
	}
	gitIn(t, dir, nil, "repack", "-adfq", "--depth=50", "--window=250")
	gitDir := filepath.Join(dir, ".git")
	verify := gitIn(t, dir, nil, "verify-pack", "-v", mustGlob(t, filepath.Join(gitDir, "objects", "pack", "*.idx")))
	deltaTrees := 0
	var objs [][2]string
	for _, l := range strings.Split(verify, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || len(f[0]) != 40 {
			continue
		}
		objs = append(objs, [2]string{f[0], f[1]})
		if f[1] == "tree" && len(f) >= 7 {
			deltaTrees++
		}
	}
	if deltaTrees < 10 {
		t.Fatalf("only %d trees are deltas: the test repository is not what it should be", deltaTrees)
	}
	db, err := Open(gitDir, gitDir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	types := map[string]plumbing.ObjectType{"tree": plumbing.TreeObject, "commit": plumbing.CommitObject, "blob": plumbing.BlobObject}
	for _, o := range objs {
		typ := types[o[1]]
		want := []byte(gitIn(t, dir, nil, "cat-file", o[1], o[0]))
		got, err := db.ReadObject(plumbing.NewHash(o[0]), typ, 1<<20)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s %s: %d bytes, %v; git has %d", o[1], o[0], len(got), err, len(want))
		}
		// Read by this package, not go-git.
		if gt, _, data, found, err := db.readPackedObject(plumbing.NewHash(o[0]), 1<<20, 1<<20, nil); !found || err != nil || gt != typ || !bytes.Equal(data, want) {
			t.Fatalf("%s %s from the packs: found %v, %v, type %v", o[1], o[0], found, err, gt)
		}
		other := plumbing.CommitObject
		if typ == plumbing.CommitObject {
			other = plumbing.TreeObject
		}
		if _, err := db.ReadObject(plumbing.NewHash(o[0]), other, 1<<20); err == nil {
			t.Fatalf("%s %s read as a %s", o[1], o[0], other)
		}
		if len(want) > 1 {
			if _, err := db.ReadObject(plumbing.NewHash(o[0]), typ, int64(len(want)-1)); err == nil {
				t.Fatalf("%s %s of %d bytes read under a limit of %d", o[1], o[0], len(want), len(want)-1)
			}
		}
	}
}

func mustGlob(t *testing.T, pattern string) string {
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) != 1 {
		t.Fatalf("%s: %v, %v", pattern, m, err)
	}
	return m[0]
}

// TestApplyDeltaRefusesMalformed: a delta that copies outside its base,
// inserts past its end, uses the reserved instruction, makes another size
// than its header says, or wants another base size is an error, never a
// panic or short data.
func TestApplyDeltaRefusesMalformed(t *testing.T) {
	base := []byte("0123456789")
	hdr := func(baseSize, size int64) []byte { return append(deltaVarint(baseSize), deltaVarint(size)...) }
	good := append(hdr(10, 7), 0x91, 2, 4, 3, 'x', 'y', 'z') // copy 4 bytes at 2, insert "xyz"
	if out, _, err := applyDelta(base, good, 100, nil); err != nil || string(out) != "2345xyz" {
		t.Fatalf("good delta: %q, %v", out, err)
	}
	if _, size, err := applyDelta(base, good, 6, nil); err != errTooBig || size != 7 {
		t.Fatalf("over the limit: size %d, %v", size, err)
	}
	for what, d := range map[string][]byte{
		"copy past the base":  append(hdr(10, 4), 0x91, 8, 4),
		"insert past the end": append(hdr(10, 2), 3, 'a', 'b', 'c'),
		"insert cut short":    append(hdr(10, 3), 3, 'a'),
		"reserved 0":          append(hdr(10, 1), 0),
		"shorter than said":   append(hdr(10, 5), 0x91, 0, 4),
		"other base size":     append(hdr(9, 4), 0x91, 0, 4),
		"copy offset cut":     append(hdr(10, 4), 0x91),
		"no header":           {0x80},
	} {
		if out, _, err := applyDelta(base, d, 100, nil); err == nil {
			t.Errorf("%s: made %q", what, out)
		}
	}
}
