package nbd

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/gitblk/gitblk/internal/iovec"
	"github.com/gitblk/gitblk/internal/testutil"
)

// vecImage is a VecImage over a memImage whose bytes are also in a file:
// each read is cut into 40,000-byte stretches lent from the file, lent
// from memory, and filled into p in turn. It counts the file pieces it
// lent and the references released.
type vecImage struct {
	*memImage
	f              *os.File
	lent, released atomic.Int64
	noFile         bool // lend memory only
}

const vecStretch = 40000

func (v *vecImage) ReadVec(p []byte, off int64, l *iovec.List) (int, error) {
	l.Reset(p)
	n, err := v.ReadAt(p, off)
	for pos := 0; pos < n; pos += vecStretch {
		k := min(vecStretch, n-pos)
		at := off + int64(pos)
		switch (at / vecStretch) % 3 {
		case 0:
			if v.noFile {
				continue
			}
			clear(p[pos : pos+k]) // what is lent must not come from p
			v.lent.Add(1)
			l.Lend(pos, iovec.Piece{File: v.f, Off: at, Len: k, Ref: vecRef{v}})
		case 1:
			clear(p[pos : pos+k])
			l.Lend(pos, iovec.Piece{Mem: v.data[at : at+int64(k)]})
		}
	}
	l.Finish(n)
	return n, err
}

type vecRef struct{ v *vecImage }

func (r vecRef) Release() { r.v.released.Add(1) }

func newVecImage(t *testing.T) *vecImage {
	img := newMemImage(3<<20+12345, 7, nil)
	path := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(path, img.data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &vecImage{memImage: img, f: f}
}

// TestVecReads reads a VecImage over unix and TCP, with simple and
// structured replies, in reads big enough for workers (the only ones sent
// from pieces) and small ones, and checks every byte and that every lent
// file range was released.
func TestVecReads(t *testing.T) {
	vi := newVecImage(t)
	ts := startVecServer(t, vi)
	sizes := []int{300 << 10, 65<<10 + 1, 4096, 1 << 20, 2<<20 + 777}
	for _, network := range []string{"unix", "tcp"} {
		addr := ts.sock
		if network == "tcp" {
			addr = ts.tcp
		}
		for _, structured := range []bool{false, true} {
			rc := dialRaw(t, network, addr)
			rc.open("vec", structured, false)
			cookie := uint64(1)
			for _, n := range sizes {
				for _, off := range []int64{0, 12345, vecStretch - 1, vi.Size() - int64(n)} {
					rc.sendReq(0, cmdRead, cookie, uint64(off), uint32(n), nil)
					var got []byte
					if structured {
						var errno uint32
						got, errno, _ = rc.structuredRead(cookie, uint64(off), n)
						if errno != 0 {
							t.Fatalf("%s: read of %d at %d: error %d", network, n, off, errno)
						}
					} else {
						rc.expectSimple(cookie, 0)
						got = rc.read(n)
					}
					if want := vi.data[off : off+int64(n)]; !bytes.Equal(got, want) {
						t.Fatalf("%s structured=%v: read of %d at %d differs at %d", network, structured, n, off, firstDiff(got, want))
					}
					cookie++
				}
			}
			rc.sendReq(0, cmdDisc, cookie, 0, 0, nil)
			rc.expectClosed()
		}
	}
	if vi.lent.Load() == 0 {
		t.Error("no file range was lent")
	}
	if l, r := vi.lent.Load(), vi.released.Load(); l != r {
		t.Errorf("%d file ranges lent, %d released", l, r)
	}
}

// TestVecNbdcopy copies a VecImage with nbdcopy, many reads in flight
// over several connections.
func TestVecNbdcopy(t *testing.T) {
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	vi := newVecImage(t)
	ts := startServer(t, func(s *Server) {
		s.Resolve = func(ctx context.Context, name string, peer Peer) (*Export, error) {
			return &Export{Name: name, Image: vi}, nil
		}
	})
	out := filepath.Join(t.TempDir(), "out")
	runTool(t, "nbdcopy", "--connections=4", "--request-size=262144", ts.unixURI("vec"), out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, vi.data) {
		t.Fatalf("nbdcopy: copy differs at %d (%d bytes, want %d)", firstDiff(got, vi.data), len(got), len(vi.data))
	}
	if l, r := vi.lent.Load(), vi.released.Load(); l == 0 || l != r {
		t.Errorf("%d file ranges lent, %d released", l, r)
	}
}

// TestVecFileGone: a lent file range that cannot be sent (its file was
// closed under the server) ends the connection rather than sending
// wrong bytes, and the server goes on serving others.
func TestVecFileGone(t *testing.T) {
	vi := newVecImage(t)
	ts := startVecServer(t, vi)
	vi.f.Close()
	rc := dialRaw(t, "unix", ts.sock)
	rc.open("vec", false, false)
	rc.sendReq(0, cmdRead, 1, 0, 200<<10, nil)
	rc.expectSimple(1, 0)
	buf := make([]byte, 200<<10)
	if n, err := io.ReadFull(rc.r, buf); err == nil {
		t.Fatalf("read %d bytes of a reply whose file was closed", n)
	}
	checkFresh(t, ts)
}

// TestVecPipelined sends many small and big reads without waiting, so
// that big reads answered inline (after quick ones) meet small replies
// held back for coalescing, and checks every reply by its cookie.
func TestVecPipelined(t *testing.T) {
	vi := newVecImage(t)
	ts := startServer(t, func(s *Server) {
		s.Resolve = func(ctx context.Context, name string, peer Peer) (*Export, error) {
			return &Export{Name: name, Image: vi}, nil
		}
	})
	for _, structured := range []bool{false, true} {
		rc := dialRaw(t, "unix", ts.sock)
		rc.open("vec", structured, false)
		type req struct {
			off int64
			n   int
		}
		reqs := map[uint64]req{}
		const count = 200
		for i := range count {
			n := 4096 + i*37
			if i%3 == 0 {
				n = 200<<10 + i*101
			}
			off := int64(i) * 12289 % (vi.Size() - int64(n))
			reqs[uint64(i+1)] = req{off, n}
			rc.sendReq(0, cmdRead, uint64(i+1), uint64(off), uint32(n), nil)
		}
		for range count {
			var cookie uint64
			var got []byte
			if structured {
				c := rc.readChunk()
				if c.typ != replyTypeOffsetData || c.flags&replyFlagDone == 0 {
					t.Fatalf("chunk type %d flags %#x", c.typ, c.flags)
				}
				cookie, got = c.cookie, c.payload[offsetLen:]
				if rq := reqs[cookie]; be.Uint64(c.payload) != uint64(rq.off) {
					t.Fatalf("cookie %d: offset %d, want %d", cookie, be.Uint64(c.payload), rq.off)
				}
			} else {
				var errno uint32
				errno, cookie = rc.readSimple()
				if errno != 0 {
					t.Fatalf("cookie %d: error %d", cookie, errno)
				}
				got = rc.read(reqs[cookie].n)
			}
			rq, ok := reqs[cookie]
			if !ok {
				t.Fatalf("reply to unknown or repeated cookie %d", cookie)
			}
			delete(reqs, cookie)
			if want := vi.data[rq.off : rq.off+int64(rq.n)]; !bytes.Equal(got, want) {
				t.Fatalf("cookie %d: %d bytes at %d differ at %d", cookie, rq.n, rq.off, firstDiff(got, want))
			}
		}
		rc.sendReq(0, cmdDisc, 9999, 0, 0, nil)
		rc.expectClosed()
	}
	if l, r := vi.lent.Load(), vi.released.Load(); l == 0 || l != r {
		t.Errorf("%d file ranges lent, %d released", l, r)
	}
}

// startVecServer starts a test server that also serves img as export "vec".
func startVecServer(t *testing.T, img Image) *testServer {
	t.Helper()
	return startServer(t, func(s *Server) {
		inner := s.Resolve
		s.Resolve = func(ctx context.Context, name string, peer Peer) (*Export, error) {
			if name == "vec" {
				return &Export{Name: name, Image: img}, nil
			}
			return inner(ctx, name, peer)
		}
	})
}
