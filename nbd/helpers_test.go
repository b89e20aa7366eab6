package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// run is a zero run of a test image.
type run struct{ off, n int64 }

// memImage is an in-memory image: deterministic pseudo-random bytes with
// zero runs. It implements ExtentAt like imager.Layout.
type memImage struct {
	data  []byte
	zeros []run // sorted, disjoint
}

func newMemImage(size int64, seed uint64, zeros []run) *memImage {
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1, 2, 3})
	rng.Read(data)
	for _, z := range zeros {
		clear(data[z.off : z.off+z.n])
	}
	return &memImage{data: data, zeros: zeros}
}

func (m *memImage) Size() int64 { return int64(len(m.data)) }

func (m *memImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memImage) ExtentAt(off int64) (int64, bool) {
	size := int64(len(m.data))
	if off < 0 || off >= size {
		return 0, false
	}
	i := sort.Search(len(m.zeros), func(i int) bool { return m.zeros[i].off+m.zeros[i].n > off })
	if i < len(m.zeros) && m.zeros[i].off <= off {
		return m.zeros[i].off + m.zeros[i].n - off, true
	}
	if i < len(m.zeros) {
		return m.zeros[i].off - off, false
	}
	return size - off, false
}

// plainImage hides ExtentAt: an image that knows nothing of its zeros.
type plainImage struct{ Image }

// failImage fails reads that touch [from, to), as a missing git object would.
type failImage struct {
	*memImage
	from, to int64
}

var errTestObject = errors.New("imager: dir/broken.bin (blob 0123456789abcdef0123456789abcdef01234567): object not found")

func (f *failImage) ReadAt(p []byte, off int64) (int, error) {
	if off < f.to && off+int64(len(p)) > f.from {
		return 0, errTestObject
	}
	return f.memImage.ReadAt(p, off)
}

// genImage computes its bytes from the offset: a large image without memory.
type genImage struct{ size int64 }

func genByte(off int64) byte {
	x := uint64(off/8)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	x ^= x >> 29
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 32
	return byte(x >> (8 * (off % 8)))
}

func (g *genImage) Size() int64 { return g.size }

func (g *genImage) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for ; n < len(p) && off+int64(n) < g.size; n++ {
		p[n] = genByte(off + int64(n))
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// gateImage blocks every read until its gate is opened, to hold requests
// in flight.
type gateImage struct {
	*memImage
	entered chan struct{}
	gate    chan struct{}
}

func (g *gateImage) ReadAt(p []byte, off int64) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	return g.memImage.ReadAt(p, off)
}

const (
	smallSize = 4 << 20
	bigSize   = 80 << 20
	failFrom  = 1<<20 + 8192
	failTo    = failFrom + 4096
)

// smallZeros are the zero runs of the small image: aligned runs, a run at
// the end, and a 512-byte run too short to be a hole chunk.
var smallZeros = []run{
	{0x10000, 0x30000},
	{0x5000 + 0x100, 512},
	{2 << 20, 1 << 20},
	{smallSize - 0x10000, 0x10000},
}

func init() {
	sort.Slice(smallZeros, func(i, j int) bool { return smallZeros[i].off < smallZeros[j].off })
}

var (
	smallOnce sync.Once
	smallImg  *memImage
)

func smallImage() *memImage {
	smallOnce.Do(func() { smallImg = newMemImage(smallSize, 1, smallZeros) })
	return smallImg
}

// testServer is a Server listening on TCP and a unix socket.
type testServer struct {
	srv      *Server
	tcp      string // host:port
	sock     string // unix socket path
	log      *testutil.LogBuffer
	resolves atomic.Int64
	releases atomic.Int64
	gate     *gateImage
}

const testDescription = "test image (commit 0123456789abcdef)"

// exports of the test server, by name.
func (ts *testServer) image(name string) (Image, bool) {
	switch name {
	case "", "small":
		return smallImage(), true
	case "plain":
		return plainImage{smallImage()}, true
	case "big":
		return &genImage{size: bigSize}, true
	case "bad":
		return &failImage{memImage: smallImage(), from: failFrom, to: failTo}, true
	case "gate":
		return ts.gate, true
	}
	return nil, false
}

var testExportNames = []string{"", "small", "plain", "big", "bad", "gate"}

func startServer(t testing.TB, tweak func(*Server)) *testServer {
	t.Helper()
	return startServerMode(t, -1, tweak)
}

// startServerMode is startServer with both listeners served by ServeMode
// with mode (a negative mode: by Serve).
func startServerMode(t testing.TB, mode TLSMode, tweak func(*Server)) *testServer {
	t.Helper()
	ts := &testServer{log: &testutil.LogBuffer{}}
	ts.gate = &gateImage{memImage: smallImage(), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	ts.srv = &Server{
		Resolve: func(ctx context.Context, name string, peer Peer) (*Export, error) {
			img, ok := ts.image(name)
			if !ok {
				return nil, fmt.Errorf("test resolver: %q: %w", name, ErrUnknownExport)
			}
			ts.resolves.Add(1)
			return &Export{Name: name, Description: testDescription, Image: img,
				Release: func() { ts.releases.Add(1) }, LogAttrs: []any{"commit", "0123456789abcdef"}}, nil
		},
		List:   func(ctx context.Context, peer Peer) []string { return testExportNames },
		Logger: slog.New(slog.NewTextHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tweak != nil {
		tweak(ts.srv)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.tcp = tl.Addr().String()
	dir, err := os.MkdirTemp("", "nbdtest") // t.TempDir() paths can exceed the 108-byte socket limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ts.sock = filepath.Join(dir, "nbd.sock")
	ul, err := net.Listen("unix", ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	for _, l := range []net.Listener{tl, ul} {
		go func() {
			if mode < 0 {
				errs <- ts.srv.Serve(ctx, l)
			} else {
				errs <- ts.srv.ServeMode(ctx, l, mode)
			}
		}()
	}
	t.Cleanup(func() {
		select {
		case <-ts.gate.gate:
		default:
			close(ts.gate.gate)
		}
		if err := ts.srv.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("server log:\n%s", ts.log.String())
		}
	})
	return ts
}

func (ts *testServer) tcpURI(name string) string { return "nbd://" + ts.tcp + "/" + name }
func (ts *testServer) unixURI(name string) string {
	return "nbd+unix:///" + name + "?socket=" + ts.sock
}

// runTool runs a client with /usr/bin first in PATH (for python3-libnbd).
func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:"+os.Getenv("PATH"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

var (
	_ ExtentImage = (*memImage)(nil)
	_ Image       = plainImage{}
	_ Image       = (*failImage)(nil)
	_ Image       = (*genImage)(nil)
)

// firstDiff is the first offset where a and b differ (or the shorter length).
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// osExec is exec.Command with /usr/bin first in PATH.
func osExec(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:"+os.Getenv("PATH"))
	return cmd
}
