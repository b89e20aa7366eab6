package odb

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// TestReadBlobsMatchesReadBlob reads random batches (tiny files packed
// close together, the test blobs packed with deltas, a missing id, reads
// past the end, empty and negative reads) with ReadBlobs, and checks each
// read against ReadBlob on another store: same count, same error, same
// bytes.
func TestReadBlobsMatchesReadBlob(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	for i := range 300 {
		testutil.WriteFile(t, dir, fmt.Sprintf("tiny/f%03d", i), []byte(fmt.Sprintf("file %d\n", i*i)), 0o644)
	}
	testutil.CommitAll(t, dir, "tiny files")
	for i := range 300 {
		ids = append(ids, testutil.Git(t, dir, "rev-parse", fmt.Sprintf("HEAD:tiny/f%03d", i)))
	}
	testutil.Git(t, dir, "repack", "-q", "-a", "-d", "-f", "--depth=50", "--window=50")
	testutil.Git(t, dir, "prune-packed")
	hashes := []plumbing.Hash{plumbing.NewHash("0123456789abcdef0123456789abcdef01234567")} // missing
	for _, id := range ids {
		hashes = append(hashes, blobID(t, id))
	}
	ref := openRepo(t, dir, Options{DiskCacheSize: -1})
	for _, opts := range []Options{{}, {CacheSize: 64 << 10}, {DiskCacheSize: -1}} {
		r := openRepo(t, dir, opts)
		rng := rand.New(rand.NewSource(5))
		for round := range 60 {
			reads := make([]BlobRead, 1+rng.Intn(400))
			for k := range reads {
				id := hashes[rng.Intn(len(hashes))]
				if round%2 == 0 && k > 0 && rng.Intn(3) > 0 { // runs of neighbours, as a tar read makes
					id = hashes[min(len(hashes)-1, 1+len(hashes)-300+k%300)]
				}
				var off int64
				var n int
				if round%3 == 1 { // whole blobs, as a tar read asks (and the blob log's preadv serves)
					if size, err := ref.BlobSize(id); err == nil && size <= 1<<20 {
						reads[k] = BlobRead{ID: id, P: make([]byte, size)}
						continue
					}
				}
				switch rng.Intn(6) {
				case 0:
					off, n = -1, 4
				case 1:
					off, n = rng.Int63n(4<<20), rng.Intn(100)
				case 2:
					n = 0
				default:
					n = rng.Intn(70000)
				}
				reads[k] = BlobRead{ID: id, P: make([]byte, n), Off: off}
			}
			r.ReadBlobs(reads)
			for k, rd := range reads {
				want := make([]byte, len(rd.P))
				wn, werr := ref.ReadBlob(rd.ID, want, rd.Off)
				if rd.N != wn || fmt.Sprint(rd.Err) != fmt.Sprint(werr) || !bytes.Equal(rd.P[:rd.N], want[:wn]) {
					t.Fatalf("%+v round %d read %d (%s, %d bytes at %d): ReadBlobs gave %d, %v; ReadBlob %d, %v",
						opts, round, k, rd.ID, len(rd.P), rd.Off, rd.N, rd.Err, wn, werr)
				}
			}
		}
	}
}

// TestReadBlobsDamagedEntry: a damaged entry in a run of a batch is an
// error for its read alone; its neighbours read right.
func TestReadBlobsDamagedEntry(t *testing.T) {
	dir := testutil.NewRepo(t)
	var ids []plumbing.Hash
	var entries [][]byte
	var datas [][]byte
	for i := range 8 {
		data := bytes.Repeat([]byte{byte('a' + i)}, 500+i)
		e := blobEntry(data)
		if i == 3 {
			e[len(e)-10] ^= 0x55 // in the deflate data or its checksum
		}
		ids = append(ids, plumbing.NewHash(fmt.Sprintf("%02x%038x", i+1, i)))
		entries, datas = append(entries, e), append(datas, data)
	}
	installPack(t, dir, ids, entries)
	r := openRepo(t, dir, Options{})
	reads := make([]BlobRead, len(ids))
	for k := range reads {
		reads[k] = BlobRead{ID: ids[k], P: make([]byte, len(datas[k])), Off: 0}
	}
	r.ReadBlobs(reads)
	for k, rd := range reads {
		if k == 3 {
			wantCorrupt(t, "damaged entry in a batch", rd.N, rd.Err)
			continue
		}
		if rd.Err != nil || rd.N != len(datas[k]) || !bytes.Equal(rd.P, datas[k]) {
			t.Errorf("read %d: %d, %v; want its %d bytes", k, rd.N, rd.Err, len(datas[k]))
		}
	}
}

// TestReadBlobsFromLog reads many small blobs (over uncachedMax) twice,
// in order, through a memory cache too small for them: the second pass
// is served by the caches alone, whole neighbours in the blob log with one
// preadv, and gives the same bytes.
func TestReadBlobsFromLog(t *testing.T) {
	const files = 400
	dir, ids, want := packedFiles(t, files, func(i int) string {
		return fmt.Sprintf("content of file %d, %s\n", i, bytes.Repeat([]byte{'x'}, uncachedMax+i%50))
	})
	r := openRepo(t, dir, Options{CacheSize: 64 << 10, CacheDir: t.TempDir()})
	var before Stats
	for pass := range 2 {
		for i := 0; i < files; i += 100 {
			reads := make([]BlobRead, 100)
			for k := range reads {
				id := ids[i+k]
				reads[k] = BlobRead{ID: id, P: make([]byte, len(want[id]))}
			}
			r.ReadBlobs(reads)
			for k, rd := range reads {
				if rd.Err != nil || rd.N != len(rd.P) || !bytes.Equal(rd.P, want[rd.ID]) {
					t.Fatalf("pass %d, file %d: %d, %v; want its %d bytes", pass, i+k, rd.N, rd.Err, len(rd.P))
				}
			}
		}
		st := r.Stats()
		if pass == 1 && st.Hits-before.Hits != files {
			t.Errorf("second pass: %d cache hits of %d reads", st.Hits-before.Hits, files)
		}
		if st.MemBytes == 0 || st.MemBytes > 64<<10 {
			t.Errorf("pass %d: the memory cache holds %d bytes", pass, st.MemBytes)
		}
		before = st
	}
	logged := 0
	for _, id := range ids {
		if r.blobs.log.has(id) {
			logged++
		}
	}
	if logged < files/2 {
		t.Errorf("%d of %d blobs in the blob log: the second pass was not served from it", logged, files)
	}
}

// TestReadBlobsFullCache reads small blobs whole in batches through a
// memory cache that holds a few of them: once it is full, the others are
// inflated into their reads' buffers and go straight to the blob log, so
// the memory cache keeps the first batch's blobs instead of churning, and
// every blob is held by one cache or the other.
func TestReadBlobsFullCache(t *testing.T) {
	const files, batch = 200, 50
	rng := rand.New(rand.NewSource(1))
	dir, ids, want := packedFiles(t, files, func(i int) string {
		b := make([]byte, 800+rng.Intn(100)) // random: git finds no deltas among them
		for k := range b {
			b[k] = byte(rng.Uint32())
		}
		return hex.EncodeToString(b)
	})
	const cacheSize = 32 << 10
	r := openRepo(t, dir, Options{CacheSize: cacheSize, CacheDir: t.TempDir()})
	for pass := range 2 {
		for i := 0; i < files; i += batch {
			reads := make([]BlobRead, batch)
			for k := range reads {
				reads[k] = BlobRead{ID: ids[i+k], P: make([]byte, len(want[ids[i+k]]))}
			}
			r.ReadBlobs(reads)
			for k, rd := range reads {
				if rd.Err != nil || rd.N != len(rd.P) || !bytes.Equal(rd.P, want[rd.ID]) {
					t.Fatalf("pass %d, file %d: %d, %v; want its %d bytes", pass, i+k, rd.N, rd.Err, len(rd.P))
				}
			}
		}
		if st := r.Stats(); pass == 1 && st.Misses != files {
			t.Errorf("after two passes: %d misses; want one per blob (%d)", st.Misses, files)
		}
	}
	inMem := 0
	for i, id := range ids {
		_, mem := r.blobs.getMem(id)
		if mem {
			inMem++
			if i >= batch {
				t.Errorf("blob %d is in memory: a later batch dropped the first batch's blobs", i)
			}
		} else if !r.blobs.log.has(id) {
			t.Errorf("blob %d is in neither the memory cache nor the blob log", i)
		}
	}
	if inMem == 0 {
		t.Errorf("no blob in the memory cache")
	}
}

// TestReadBlobsTiny reads many tiny blobs whole, twice, in a batch,
// through a memory cache that can hold some of them and one that can hold
// all: they are kept in memory while the cache has room (never dropping
// another blob), the rest go to the blob log, the second pass gives the
// same bytes and is all cache hits. With the log at tinyLogMax blobs,
// tiny blobs stay out of it and the second pass reads the pack again.
func TestReadBlobsTiny(t *testing.T) {
	const files = 300
	dir, ids, want := packedFiles(t, files, func(i int) string { return fmt.Sprintf("tiny %d\n", i) })
	for _, tc := range []struct {
		cacheSize int64
		logFull   bool
	}{{16 << 10, false}, {1 << 20, false}, {16 << 10, true}} {
		r := openRepo(t, dir, Options{CacheSize: tc.cacheSize, CacheDir: t.TempDir()})
		if tc.logFull {
			r.blobs.log.tiny.Store(tinyLogMax)
		}
		var before Stats
		for pass := range 2 {
			reads := make([]BlobRead, files)
			for k := range reads {
				// Some reads ask for more than the blob: N is its size, with EOF.
				reads[k] = BlobRead{ID: ids[k], P: make([]byte, len(want[ids[k]])+k%2)}
			}
			r.ReadBlobs(reads)
			for k, rd := range reads {
				wantErr := error(nil)
				if k%2 == 1 {
					wantErr = io.EOF
				}
				if rd.Err != wantErr || rd.N != len(want[rd.ID]) || !bytes.Equal(rd.P[:rd.N], want[rd.ID]) {
					t.Fatalf("%+v, pass %d, file %d: %d, %v; want its %d bytes and %v", tc, pass, k, rd.N, rd.Err, len(want[rd.ID]), wantErr)
				}
			}
			st := r.Stats()
			if st.MemBytes == 0 || st.MemBytes > tc.cacheSize {
				t.Errorf("%+v, pass %d: the memory cache holds %d bytes of tiny blobs", tc, pass, st.MemBytes)
			}
			hits := st.Hits - before.Hits
			if pass == 1 && !tc.logFull && hits != files {
				t.Errorf("%+v: second pass: %d cache hits of %d reads", tc, hits, files)
			}
			if pass == 1 && tc.logFull && hits == files {
				t.Errorf("%+v: second pass: all %d reads hit, with no room in memory or the log", tc, files)
			}
			before = st
		}
		logged := 0
		for _, id := range ids {
			if r.blobs.log.has(id) {
				logged++
			}
		}
		switch {
		case tc.cacheSize == 1<<20 && logged > 0:
			t.Errorf("%+v: %d tiny blobs went to the blob log with room in memory", tc, logged)
		case tc.cacheSize < 1<<20 && !tc.logFull && logged == 0:
			t.Errorf("%+v: no tiny blob went to the blob log with no room in memory", tc)
		case tc.logFull && logged > 0:
			t.Errorf("%+v: %d tiny blobs went to a log at tinyLogMax", tc, logged)
		}
	}
}

// packedFiles commits files f000.. with content(i), all in one pack, and
// returns the repository, the files' blob ids in order and their bytes.
func packedFiles(t *testing.T, files int, content func(i int) string) (string, []plumbing.Hash, map[plumbing.Hash][]byte) {
	t.Helper()
	dir := testutil.NewRepo(t)
	for i := range files {
		testutil.WriteFile(t, dir, fmt.Sprintf("f%03d", i), []byte(content(i)), 0o644)
	}
	testutil.CommitAll(t, dir, "files")
	testutil.Git(t, dir, "repack", "-q", "-a", "-d")
	testutil.Git(t, dir, "prune-packed")
	var ids []plumbing.Hash
	want := map[plumbing.Hash][]byte{}
	for i := range files {
		id := blobID(t, testutil.Git(t, dir, "rev-parse", fmt.Sprintf("HEAD:f%03d", i)))
		ids = append(ids, id)
		want[id] = testutil.GitBytes(t, dir, "cat-file", "blob", id.String())
	}
	return dir, ids, want
}

// TestReadBlobsHints sizes a tree's blobs with BlobSizesHints and reads
// them with the hints: every blob gets one, and each hint finds its blob
// without a lookup. Hints that name another blob, another pack or a
// position past the index are not trusted: the reads still give each
// blob's own bytes.
func TestReadBlobsHints(t *testing.T) {
	const files = 200
	dir, ids, want := packedFiles(t, files, func(i int) string { return fmt.Sprintf("blob %d of the hinted tree\n", i) })
	r := openRepo(t, dir, Options{CacheDir: t.TempDir()})
	sizes := make([]int64, files)
	hints := make([]uint64, files)
	if _, err := r.BlobSizesHints(ids, sizes, hints); err != nil {
		t.Fatal(err)
	}
	packs, err := r.packs.current()
	if err != nil {
		t.Fatal(err)
	}
	for k, h := range hints {
		if h == 0 {
			t.Fatalf("blob %d: no hint", k)
		}
		if _, off, ok := hinted(packs, h, ids[k]); !ok {
			t.Errorf("blob %d: hint %#x does not find it", k, h)
		} else if want, _ := packs[0].idx.FindOffset(ids[k]); off != want {
			t.Errorf("blob %d: hint gives offset %d, the index %d", k, off, want)
		}
		if _, _, ok := hinted(packs, h, ids[(k+1)%files]); ok {
			t.Errorf("blob %d's hint finds blob %d", k, (k+1)%files)
		}
	}
	for _, tc := range []struct {
		name string
		hint func(k int) uint64
	}{
		{"own", func(k int) uint64 { return hints[k] }},
		{"another blob's", func(k int) uint64 { return hints[(k+7)%files] }},
		{"another pack", func(k int) uint64 { return hints[k] + 5<<32 }},
		{"past the index", func(k int) uint64 { return 1<<32 | 1<<31 }},
	} {
		r := openRepo(t, dir, Options{CacheDir: t.TempDir()})
		reads := make([]BlobRead, files)
		for k := range reads {
			reads[k] = BlobRead{ID: ids[k], P: make([]byte, len(want[ids[k]])), Hint: tc.hint(k)}
		}
		r.ReadBlobs(reads)
		for k, rd := range reads {
			if rd.Err != nil || rd.N != len(rd.P) || !bytes.Equal(rd.P, want[rd.ID]) {
				t.Errorf("%s hints, blob %d: %d, %v; want its %d bytes", tc.name, k, rd.N, rd.Err, len(rd.P))
			}
		}
	}
}
