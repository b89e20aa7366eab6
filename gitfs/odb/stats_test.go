package odb

import (
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
	want := Stats{Hits: 1, Misses: 1, HitBytes: int64(len(datas[0]) - 4096), MissBytes: 4096, MemBytes: int64(len(datas[0]))}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}
