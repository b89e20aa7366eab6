package metrics

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// TestCacheStats: a cache that counts by itself is read at each scrape.
func TestCacheStats(t *testing.T) {
	r := New()
	var hits atomic.Int64
	r.SetCacheStats(func() CacheStats {
		return CacheStats{Hits: hits.Load(), Misses: 2, HitBytes: 100 * hits.Load(), MissBytes: 8192, Bytes: 4096}
	})
	for _, n := range []int64{0, 3} {
		hits.Store(n)
		fams := scrape(t, r.Handler())
		for _, want := range []struct {
			name string
			v    float64
		}{
			{"gitblk_cache_hits_total", float64(n)},
			{"gitblk_cache_misses_total", 2},
			{"gitblk_cache_hit_bytes_total", float64(100 * n)},
			{"gitblk_cache_miss_bytes_total", 8192},
			{"gitblk_cache_bytes", 4096},
		} {
			if v, ok := testutil.MetricValue(fams, want.name); !ok || v != want.v {
				t.Errorf("after %d hits: %s = %v (%v), want %v", n, want.name, v, ok, want.v)
			}
		}
	}
}

// Without a default export, the status line names the first exports.
func TestStatusLineNamedExports(t *testing.T) {
	r := New()
	for _, n := range []string{"a", "b", "b/refs/tags/v1", "c", "d"} {
		r.SetExport(Export{Name: n, Ref: "main", Commit: strings.Repeat(n[:1], 40), Format: "tar"})
	}
	want := "a: main at aaaaaaaaaaaa, b: main at bbbbbbbbbbbb, c: main at cccccccccccc, ..., 0 connections"
	if got := r.StatusLine(); got != want {
		t.Errorf("status line %q, want %q", got, want)
	}
}
