package odb

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestHashOrder: hashOrder returns every position once, in id order, for
// batches of every size, with repeated ids and with many ids sharing
// their leading bits (a bucket sorted by pdqsort); so do the parts of
// hashOrderPart, one after another, however many parts.
func TestHashOrder(t *testing.T) {
	for _, parts := range []int{1, 2, 4, maxOrderParts} {
		t.Run(fmt.Sprintf("parts=%d", parts), func(t *testing.T) {
			testHashOrder(t, func(hs []plumbing.Hash) []query {
				if parts == 1 {
					return hashOrder(hs)
				}
				var qs []query
				for p := range parts {
					qs = append(qs, hashOrderPart(hs, p, parts)...)
				}
				return qs
			})
		})
	}
}

func testHashOrder(t *testing.T, hashOrder func([]plumbing.Hash) []query) {
	_, ids := bigIndex(t, 50000)
	rng := rand.New(rand.NewPCG(1, 2))
	shared := make([]plumbing.Hash, 200) // same first 4 bytes
	for i := range shared {
		shared[i] = ids[rng.IntN(len(ids))]
		copy(shared[i][:4], "\x12\x34\x56\x78")
	}
	for _, hs := range [][]plumbing.Hash{
		nil, ids[:1], ids[:2], ids[:17], ids[:1000], ids,
		append(slices.Clone(ids[:3000]), ids[:3000]...), // each twice
		append(slices.Clone(ids[:500]), shared...),
	} {
		qs := hashOrder(hs)
		if len(qs) != len(hs) {
			t.Fatalf("%d ids: %d queries", len(hs), len(qs))
		}
		seen := make([]bool, len(hs))
		for k, q := range qs {
			h := hs[q.i]
			if seen[q.i] {
				t.Fatalf("%d ids: position %d twice", len(hs), q.i)
			}
			seen[q.i] = true
			var back plumbing.Hash
			for b := 0; b < 8; b++ {
				back[b] = byte(q.key >> (56 - 8*b))
			}
			copy(back[8:], q.rest[:])
			if back != h {
				t.Fatalf("%d ids: query %d holds %s, not %s", len(hs), k, back, h)
			}
			if k > 0 && bytes.Compare(hs[qs[k-1].i][:], h[:]) > 0 {
				t.Fatalf("%d ids: %s before %s", len(hs), hs[qs[k-1].i], h)
			}
		}
	}
}

// TestFindSorted: findSorted finds what FindOffset finds, for dense and
// sparse batches, ids held and not, repeated, and leaves alone the ids an
// earlier pack held.
func TestFindSorted(t *testing.T) {
	x, ids := bigIndex(t, 300000)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 10, 5000, 300000, 400000} {
		hs := make([]plumbing.Hash, n)
		for i := range hs {
			hs[i] = ids[rng.IntN(len(ids))]
			if i%5 == 0 {
				hs[i][19] ^= 1 // not held
			}
			if i%7 == 0 {
				hs[i][0], hs[i][1] = 0xff, 0xff // not held, at the end
			}
		}
		qs := hashOrder(hs)
		loc := make([]at, len(qs))
		for k, q := range qs {
			loc[k] = at{i: int32(q.i), pack: -1}
			if k%11 == 0 {
				loc[k] = at{i: int32(q.i), pack: 0, off: -5} // held by an earlier pack
			}
		}
		x.findSorted(qs, loc, 1)
		for k, q := range qs {
			if k%11 == 0 {
				if loc[k].pack != 0 || loc[k].off != -5 {
					t.Fatalf("%d ids: query %d, already held, became %+v", n, k, loc[k])
				}
				continue
			}
			want, err := x.FindOffset(hs[q.i])
			switch {
			case err != nil && loc[k].pack != -1:
				t.Fatalf("%d ids: %s not held, found at %+v", n, hs[q.i], loc[k])
			case err == nil && (loc[k].pack != 1 || loc[k].off != want):
				t.Fatalf("%d ids: %s at %d, found %+v", n, hs[q.i], want, loc[k])
			}
		}
	}
}

// TestSortByPlace: the radix sort orders (pack, offset) as a comparison
// sort does, large offsets and several packs included, and falls back to
// the comparison sort for places out of its range.
func TestSortByPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 100, 1 << placeDigit, 100000} {
		for _, top := range []int64{1 << 20, 1 << 40, 1 << 50} {
			loc := make([]at, n)
			for k := range loc {
				loc[k] = at{off: rng.Int64N(top), i: int32(k), pack: int32(rng.IntN(3))}
				if k%3 == 0 && k > 0 {
					loc[k].off = loc[k-1].off // the same entry twice
				}
			}
			want := slices.Clone(loc)
			slices.SortFunc(want, byPlace)
			sortByPlace(loc)
			for k := range loc {
				if loc[k].pack != want[k].pack || loc[k].off != want[k].off {
					t.Fatalf("%d places under %d: %d is %+v, want %+v", n, top, k, loc[k], want[k])
				}
			}
		}
	}
}

// TestBlobSizesBatch: a batch of a whole repository's blobs (dense: looked
// up in id order, split between cores) gets git's sizes, whether the blob
// is whole or a delta in one of two packs, or loose; ids repeat; a missing
// id is reported by its index.
func TestBlobSizesBatch(t *testing.T) {
	dir := t.TempDir()
	gitIn(t, dir, nil, "init", "-q")
	// 20,000 blobs, many alike (deltas after repack), by fast-import.
	var in bytes.Buffer
	const n = 20000
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("blob %d\n%s", i, strings.Repeat("shared line of text\n", i%40))
		fmt.Fprintf(&in, "blob\nmark :%d\ndata %d\n%s\n", i+1, len(body), body)
	}
	gitIn(t, dir, in.Bytes(), "fast-import", "--quiet")
	gitIn(t, dir, nil, "repack", "-adkq") // -k: the blobs are unreachable
	// A second pack, and loose blobs.
	in.Reset()
	for i := 0; i < 3000; i++ {
		body := fmt.Sprintf("second pack %d\n", i)
		fmt.Fprintf(&in, "blob\nmark :%d\ndata %d\n%s\n", i+1, len(body), body)
	}
	gitIn(t, dir, in.Bytes(), "fast-import", "--quiet")
	var loose []string
	for i := 0; i < 50; i++ {
		loose = append(loose, strings.TrimSpace(gitIn(t, dir, []byte(fmt.Sprintf("loose %d\n", i)), "hash-object", "-w", "--stdin")))
	}
	want := map[plumbing.Hash]int64{}
	out := gitIn(t, dir, nil, "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype) %(objectsize)")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if f[1] == "blob" {
			size, _ := strconv.ParseInt(f[2], 10, 64)
			want[plumbing.NewHash(f[0])] = size
		}
	}
	if len(want) < n+3000+50 {
		t.Fatalf("%d blobs in the test repository", len(want))
	}
	var ids []plumbing.Hash
	for h := range want {
		ids = append(ids, h)
	}
	ids = append(ids, ids[:5000]...)
	db := openRepo(t, dir, Options{})
	sizes := checkBlobSizes(t, db, ids, want)
	// A missing id, in the middle: its index is the one reported.
	ids[len(ids)/2] = plumbing.NewHash("0123456789012345678901234567890123456789")
	bad, err := db.BlobSizes(ids, sizes)
	if err == nil || bad != len(ids)/2 {
		t.Fatalf("a missing blob: id %d, %v; want id %d and an error", bad, err, len(ids)/2)
	}
}

// TestBlobSizesSparse: blobs whose pack entries lie far apart (small ones
// between incompressible ones of 1-12 KiB, so that the gaps fall on both
// sides of sizeGap and some runs of entries fill the read window), and
// deltas among them, get git's sizes from one batch.
func TestBlobSizesSparse(t *testing.T) {
	dir := t.TempDir()
	gitIn(t, dir, nil, "init", "-q")
	rng := rand.New(rand.NewPCG(7, 12))
	var in bytes.Buffer
	const n = 600
	for i := 0; i < n; i++ {
		var body []byte
		switch i % 3 {
		case 0:
			body = fmt.Appendf(nil, "small %d\n", i)
		case 1: // incompressible: its entry is as long as it
			body = make([]byte, 1<<10+rng.IntN(11<<10))
			for j := range body {
				body[j] = byte(rng.Uint32())
			}
		default: // alike, to be deltified against each other
			body = fmt.Appendf(nil, "%s%d\n", strings.Repeat("a line shared by many blobs\n", 200), i)
		}
		fmt.Fprintf(&in, "blob\nmark :%d\ndata %d\n%s\n", i+1, len(body), body)
	}
	gitIn(t, dir, in.Bytes(), "fast-import", "--quiet")
	gitIn(t, dir, nil, "repack", "-adfkq") // -f: deltas computed afresh
	want := map[plumbing.Hash]int64{}
	out := gitIn(t, dir, nil, "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype) %(objectsize) %(deltabase)")
	deltas := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		size, _ := strconv.ParseInt(f[2], 10, 64)
		want[plumbing.NewHash(f[0])] = size
		if f[3] != strings.Repeat("0", 40) {
			deltas++
		}
	}
	if len(want) != n || deltas == 0 {
		t.Fatalf("%d blobs, %d deltas in the test repository; want %d blobs and some deltas", len(want), deltas, n)
	}
	var ids []plumbing.Hash
	for h := range want {
		ids = append(ids, h)
	}
	checkBlobSizes(t, openRepo(t, dir, Options{}), ids, want)
}

// checkBlobSizes sizes ids in one batch and fails unless each size is
// want's; it returns the sizes slice for reuse.
func checkBlobSizes(t *testing.T, db *Store, ids []plumbing.Hash, want map[plumbing.Hash]int64) []int64 {
	t.Helper()
	sizes := make([]int64, len(ids))
	if bad, err := db.BlobSizes(ids, sizes); err != nil {
		t.Fatalf("BlobSizes: id %d: %v", bad, err)
	}
	for i, h := range ids {
		if sizes[i] != want[h] {
			t.Fatalf("blob %s: size %d, git says %d", h, sizes[i], want[h])
		}
	}
	return sizes
}
