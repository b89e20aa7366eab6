package nbd

import (
	"math/rand"
	"testing"
)

// fakeHoles is a holeFinder over a sorted list of zero runs.
type fakeHoles [][2]int64

func (f fakeHoles) NextHole(off, end int64) (int64, int64) {
	for _, h := range f {
		s := max(h[0], off)
		if s < h[1] && s < end {
			return s, h[1] - s
		}
	}
	return 0, 0
}

// TestHoleSegments: the segments of a read cover it exactly, in order,
// holes only where the finder reports zero runs of at least minHoleChunk
// bytes, the rest data, and dataLen counts the data.
func TestHoleSegments(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	for range 2000 {
		var f fakeHoles
		pos := int64(0)
		for range 1 + rng.Intn(20) {
			pos += int64(rng.Intn(3 * minHoleChunk))
			n := int64(1 + rng.Intn(3*minHoleChunk))
			f = append(f, [2]int64{pos, pos + n})
			pos += n + 1
		}
		off := rng.Int63n(pos)
		end := off + 1 + rng.Int63n(pos-off)
		segs, holes, dataLen := holeSegments(f, off, end)
		at, data, sawHole := off, 0, false
		for i, s := range segs {
			if s.off != at || s.n <= 0 || (i > 0 && segs[i-1].zero == s.zero && !s.zero) {
				t.Fatalf("segments %+v of [%d, %d): segment %d out of place", segs, off, end, i)
			}
			if s.zero {
				sawHole = true
				if s.n < minHoleChunk {
					t.Fatalf("segments %+v: hole %d shorter than %d", segs, i, minHoleChunk)
				}
				inside := false
				for _, h := range f {
					inside = inside || (h[0] <= s.off && s.off+int64(s.n) <= h[1])
				}
				if !inside {
					t.Fatalf("segments %+v: hole %d is not in a zero run %v", segs, i, f)
				}
			} else {
				data += s.n
			}
			at += int64(s.n)
		}
		if at != end || data != dataLen || sawHole != holes {
			t.Fatalf("segments %+v of [%d, %d): end %d, data %d (said %d), holes %v (said %v)", segs, off, end, at, data, dataLen, sawHole, holes)
		}
	}
}
