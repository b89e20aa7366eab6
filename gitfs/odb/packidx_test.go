package odb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// gitIn runs git in dir and returns its output.
func gitIn(t *testing.T, dir string, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return string(out)
}

// TestPackIndexMatchesGit: every object of a pack made by git is found at
// the offset `git show-index` gives, and each offset names its object
// back, for version 1 indexes, version 2 ones, and version 2 ones whose
// offsets above 256 go to the 64-bit table (git index-pack's
// --index-version=2,0x100).
func TestPackIndexMatchesGit(t *testing.T) {
	dir := t.TempDir()
	gitIn(t, dir, nil, "init", "-q", "--bare")
	var ids []string
	for i := 0; i < 300; i++ {
		ids = append(ids, strings.TrimSpace(gitIn(t, dir, []byte(fmt.Sprintf("object %d\n", i)), "hash-object", "-w", "--stdin")))
	}
	pack := filepath.Join(t.TempDir(), "p.pack")
	packData := gitIn(t, dir, []byte(strings.Join(ids, "\n")+"\n"), "pack-objects", "--stdout")
	if err := os.WriteFile(pack, []byte(packData), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{"1", "2", "2,0x100"} {
		t.Run(version, func(t *testing.T) {
			idxPath := filepath.Join(t.TempDir(), "p.idx")
			gitIn(t, dir, nil, "index-pack", "--index-version="+version, "-o", idxPath, pack)
			idxBytes, err := os.ReadFile(idxPath)
			if err != nil {
				t.Fatal(err)
			}
			x, err := readPackIndex(idxPath)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(gitIn(t, dir, idxBytes, "show-index")), "\n")
			if len(lines) != len(ids) || x.n != len(ids) {
				t.Fatalf("git lists %d objects, index has %d, want %d", len(lines), x.n, len(ids))
			}
			large := 0
			for _, l := range lines {
				f := strings.Fields(l)
				off, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				h := plumbing.NewHash(f[1])
				got, err := x.FindOffset(h)
				if err != nil || got != off {
					t.Fatalf("FindOffset(%s) = %d, %v; git says %d", h, got, err, off)
				}
				back, err := x.FindHash(off)
				if err != nil || back != h {
					t.Fatalf("FindHash(%d) = %s, %v; want %s", off, back, err, h)
				}
				if off > 0x100 {
					large++
				}
			}
			if version == "2,0x100" && len(x.large) != 8*large {
				t.Fatalf("64-bit table holds %d offsets, want %d", len(x.large)/8, large)
			}
			if _, err := x.FindOffset(plumbing.NewHash(strings.Repeat("ff", hashLen))); err != plumbing.ErrObjectNotFound {
				t.Fatalf("absent id: %v", err)
			}
			if _, err := x.FindHash(1); err != plumbing.ErrObjectNotFound {
				t.Fatalf("offset of no entry: %v", err)
			}
		})
	}
}

// TestPackIndexMalformed: a truncated, unsorted or inconsistent index is
// refused, never trusted.
func TestPackIndexMalformed(t *testing.T) {
	dir := t.TempDir()
	gitIn(t, dir, nil, "init", "-q", "--bare")
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, strings.TrimSpace(gitIn(t, dir, []byte(fmt.Sprintf("x%d", i)), "hash-object", "-w", "--stdin")))
	}
	pack := filepath.Join(t.TempDir(), "p.pack")
	if err := os.WriteFile(pack, []byte(gitIn(t, dir, []byte(strings.Join(ids, "\n")+"\n"), "pack-objects", "--stdout")), 0o644); err != nil {
		t.Fatal(err)
	}
	idxPath := filepath.Join(t.TempDir(), "p.idx")
	gitIn(t, dir, nil, "index-pack", "-o", idxPath, pack)
	good, err := os.ReadFile(idxPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parsePackIndex(good); err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	names := 8 + idxFanout
	for what, b := range map[string][]byte{
		"empty":     {},
		"truncated": good[:len(good)-1],
		"longer":    append(bytes.Clone(good), 0),
		"version 3": mutate(func(b []byte) []byte { b[7] = 3; return b }),
		"ids swapped": mutate(func(b []byte) []byte {
			a := bytes.Clone(b[names : names+hashLen])
			copy(b[names:], b[names+hashLen:names+2*hashLen])
			copy(b[names+hashLen:], a)
			return b
		}),
		"fan-out not sorted": mutate(func(b []byte) []byte { b[8+3] = 0xff; return b }),
	} {
		if _, err := parsePackIndex(b); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}

// TestFindHashHugeOffsets: FindHash names every entry back when offsets
// are too big to share 64 bits with a position (a pack over 2^55 bytes
// here), the case buildRev sorts with a comparison instead of numbers.
func TestFindHashHugeOffsets(t *testing.T) {
	const n = 300
	x := &packIndex{n: n, recs: make([]byte, n*idxRecord), large: make([]byte, 8*n)}
	offs := make([]int64, n)
	for i := range n {
		var h plumbing.Hash
		binary.BigEndian.PutUint32(h[:], uint32(i)) // ids in order
		copy(x.recs[i*idxRecord:], h[:])
		// Offsets in another order than ids, every other one huge.
		off := int64((i*7919)%n+1) * 24
		if i%2 == 1 {
			off += 1 << 60
		}
		offs[i] = off
		binary.BigEndian.PutUint32(x.recs[i*idxRecord+hashLen:], idxLargeFlag|uint32(i))
		binary.BigEndian.PutUint64(x.large[i*8:], uint64(off))
	}
	for i, off := range offs {
		h, err := x.FindHash(off)
		if err != nil || binary.BigEndian.Uint32(h[:]) != uint32(i) {
			t.Fatalf("FindHash(%d) = %s, %v; want entry %d", off, h, err, i)
		}
	}
	if _, err := x.FindHash(1 << 59); err != plumbing.ErrObjectNotFound {
		t.Fatalf("offset of no entry: %v", err)
	}
}
