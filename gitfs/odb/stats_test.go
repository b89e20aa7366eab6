package odb

import (
	"io"
	"testing"
)

// TestStats: a first read of a blob is a miss, later reads are hits, and
// the byte counters add up to what the reads returned.
func TestStats(t *testing.T) {
	dir, ids, datas := smallBlobsRepo(t, 3, 5000)
	r, err := openStore(dir, Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if st := r.Stats(); st != (Stats{}) {
		t.Fatalf("stats of a new store: %+v", st)
	}
	buf := make([]byte, 4096)
	id := blobID(t, ids[0])
	if n, err := r.ReadBlob(id, buf, 0); n != 4096 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	if n, _ := r.ReadBlob(id, buf, 4096); n != len(datas[0])-4096 {
		t.Fatalf("second read: %d", n)
	}
	st := r.Stats()
	want := Stats{Hits: 1, Misses: 1, HitBytes: int64(len(datas[0]) - 4096), MissBytes: 4096, MemBytes: int64(len(datas[0])) + memEntryCost}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

// TestStatsBatch: ReadBlobs counts as ReadBlob does: a first read of each
// blob is a miss, a read the caches serve is a hit.
func TestStatsBatch(t *testing.T) {
	dir, ids, datas := smallBlobsRepo(t, 3, 5000)
	r, err := openStore(dir, Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	batch := func() []BlobRead {
		reads := make([]BlobRead, len(ids))
		for k := range ids {
			reads[k] = BlobRead{ID: blobID(t, ids[k]), P: make([]byte, len(datas[k]))}
		}
		r.ReadBlobs(reads)
		for k, rd := range reads {
			if rd.N != len(datas[k]) || (rd.Err != nil && rd.Err != io.EOF) {
				t.Fatalf("read %d: %d, %v", k, rd.N, rd.Err)
			}
		}
		return reads
	}
	total := int64(0)
	for _, d := range datas {
		total += int64(len(d))
	}
	batch()
	if st := r.Stats(); st.Misses != int64(len(ids)) || st.MissBytes != total || st.Hits != 0 {
		t.Errorf("after a first batch: %+v, want %d misses of %d bytes", st, len(ids), total)
	}
	batch()
	if st := r.Stats(); st.Hits != int64(len(ids)) || st.HitBytes != total || st.Misses != int64(len(ids)) {
		t.Errorf("after a second batch: %+v, want %d hits of %d bytes", st, len(ids), total)
	}
}
