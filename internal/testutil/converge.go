package testutil

import (
	"testing"
	"time"
)

// Converge polls has(i) for i in [0, n) until each has answered true once,
// pausing between rounds, and returns for each the time since start of its
// first true answer, and the longest of those. It fails the test when limit
// passes since start first. Each time is logged with t.Logf(each, i, time).
func Converge(t testing.TB, start time.Time, n int, limit, pause time.Duration, each string, has func(i int) bool) (seen []time.Duration, worst time.Duration) {
	t.Helper()
	seen = make([]time.Duration, n)
	for left := n; left > 0; time.Sleep(pause) {
		if time.Since(start) > limit {
			t.Fatalf("not converged %v after the push: %v", limit, seen)
		}
		for i := range seen {
			if seen[i] == 0 && has(i) {
				seen[i] = time.Since(start)
				left--
			}
		}
	}
	for i, d := range seen {
		worst = max(worst, d)
		t.Logf(each, i, d.Round(time.Millisecond))
	}
	return seen, worst
}
