package nbd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// TestShutdownFinishesInFlight holds a read inside ReadAt, shuts down,
// and checks that the read is still answered before the connection closes,
// and that nothing new is accepted.
func TestShutdownFinishesInFlight(t *testing.T) {
	ts := startServer(t, nil)
	rc := dialRaw(t, "unix", ts.sock)
	rc.open("gate", false, false)
	rc.sendReq(0, cmdRead, 42, 0x5000, 4096, nil)
	<-ts.gate.entered
	idle := dialRaw(t, "tcp", ts.tcp) // a connection still in its handshake
	idle.read(handshakeLen)

	shut := make(chan error, 1)
	go func() { shut <- ts.srv.Shutdown(context.Background()) }()
	idle.expectClosed()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a read was in flight", err)
	default:
	}
	close(ts.gate.gate)
	rc.expectSimple(42, 0)
	if !bytes.Equal(rc.read(4096), smallImage().data[0x5000:0x6000]) {
		t.Fatal("in-flight read: wrong data")
	}
	rc.expectClosed()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if c, err := net.Dial("unix", ts.sock); err == nil {
		c.Close()
		t.Fatal("a connection was accepted after Shutdown")
	}
	if !strings.Contains(ts.log.String(), `export=gate description="test image (commit 0123456789abcdef)" commit=0123456789abcdef end="server shutdown"`) {
		t.Errorf("log:\n%s", ts.log.String())
	}
}

// TestServeContextCancel checks that cancelling Serve's context stops it
// with nil after its connections close.
func TestServeContextCancel(t *testing.T) {
	srv := &Server{
		Resolve: func(ctx context.Context, name string, peer Peer) (*Export, error) {
			return &Export{Image: smallImage()}, nil
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	rc := dialRaw(t, "tcp", l.Addr().String())
	rc.open("", true, false)
	rc.sendReq(0, cmdRead, 1, 0, 16, nil)
	if data, errno, _ := rc.structuredRead(1, 0, 16); errno != 0 || !bytes.Equal(data, smallImage().data[:16]) {
		t.Fatalf("read: error %d", errno)
	}
	cancel()
	rc.expectClosed()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestPinning checks that a connection resolves a name once (INFO, SET_META
// and GO see one image), that a new connection resolves again, that every
// resolved export is released, and the per-connection log line.
func TestPinning(t *testing.T) {
	var resolves, releases atomic.Int64
	logs := &testutil.LogBuffer{}
	srv := &Server{
		Resolve: func(ctx context.Context, name string, peer Peer) (*Export, error) {
			if name != "moving" && name != "other" {
				return nil, ErrUnknownExport
			}
			n := resolves.Add(1)
			// Every resolution sees a "new commit": another size.
			return &Export{Name: name, Description: fmt.Sprintf("commit %d", n),
				Image:   newMemImage(4096*n, uint64(n), nil),
				Release: func() { releases.Add(1) }}, nil
		},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()

	rc := dialRaw(t, "tcp", l.Addr().String())
	rc.greet(clientFlagFixedNewstyle)
	rc.sendOpt(optInfo, infoData("moving"))
	size1, flags1 := rc.infoReplies(optInfo)
	rc.sendOpt(optInfo, infoData("other"))
	rc.infoReplies(optInfo)
	rc.sendOpt(optStructuredReply, nil)
	rc.expectOpt(optStructuredReply, repAck)
	rc.sendOpt(optSetMetaContext, metaData("moving", metaContextBaseAlloc))
	rc.expectOpt(optSetMetaContext, repMetaContext)
	rc.expectOpt(optSetMetaContext, repAck)
	rc.sendOpt(optInfo, infoData("moving"))
	size2, flags2 := rc.infoReplies(optInfo)
	rc.sendOpt(optGo, infoData("moving"))
	size3, flags3 := rc.infoReplies(optGo)
	if size1 != 4096 || size2 != size1 || size3 != size1 || flags2 != flags3 || flags1|tflagSendDF != flags2 {
		t.Fatalf("sizes %d %d %d flags %#x %#x %#x", size1, size2, size3, flags1, flags2, flags3)
	}
	rc.sendReq(0, cmdRead, 1, 0, 4096, nil)
	rc.structuredRead(1, 0, 4096)
	rc.sendReq(0, cmdBlockStatus, 2, 0, 4096, nil)
	if c := rc.readChunk(); c.typ != replyTypeBlockStatus {
		t.Fatalf("block status after pinned SET_META_CONTEXT: %+v", c)
	}
	if got := releases.Load(); got != 1 {
		t.Errorf("%d exports released after GO, want 1 (the unused \"other\")", got)
	}

	rc2 := dialRaw(t, "tcp", l.Addr().String())
	if size, _ := rc2.open("moving", false, false); size != 3*4096 {
		t.Errorf("new connection: size %d, want %d", size, 3*4096)
	}
	rc.sendReq(0, cmdDisc, 3, 0, 0, nil)
	rc.expectClosed()
	rc2.sendReq(0, cmdDisc, 3, 0, 0, nil)
	rc2.expectClosed()
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if resolves.Load() != 3 || releases.Load() != 3 {
		t.Errorf("%d resolves, %d releases, want 3 and 3", resolves.Load(), releases.Load())
	}
	line := regexp.MustCompile(`level=INFO msg="nbd connection closed" peer=tcp:127\.0\.0\.1:\d+ requests=3 bytes=4096 duration=\S+ export=moving description="commit 1" end="client disconnect"`)
	if !line.MatchString(logs.String()) {
		t.Errorf("no connection log line matching %s in:\n%s", line, logs.String())
	}
}

// fuzzSeeds are valid client byte streams.
func fuzzSeeds() [][]byte {
	flags := be.AppendUint32(nil, clientFlagFixedNewstyle|clientFlagNoZeroes)
	opt := func(b []byte, o uint32, data []byte) []byte {
		b = be.AppendUint64(b, magicIHAVEOPT)
		b = be.AppendUint32(b, o)
		b = be.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	req := func(b []byte, fl, typ uint16, cookie, off uint64, n uint32) []byte {
		b = be.AppendUint32(b, magicRequest)
		b = be.AppendUint16(b, fl)
		b = be.AppendUint16(b, typ)
		b = be.AppendUint64(b, cookie)
		b = be.AppendUint64(b, off)
		return be.AppendUint32(b, n)
	}
	simple := opt(bytes.Clone(flags), optGo, infoData("", infoName, infoDescription, infoBlockSize))
	simple = req(simple, 0, cmdRead, 1, 0x5000, 4096)
	simple = req(simple, 0, cmdRead, 2, 0x10000, 0x40000)
	simple = req(simple, 0, cmdDisc, 3, 0, 0)

	structured := opt(bytes.Clone(flags), optStructuredReply, nil)
	structured = opt(structured, optListMetaContext, metaData("", "base:"))
	structured = opt(structured, optSetMetaContext, metaData("", metaContextBaseAlloc))
	structured = opt(structured, optInfo, infoData(""))
	structured = opt(structured, optGo, infoData(""))
	structured = req(structured, 0, cmdBlockStatus, 1, 0, smallSize)
	structured = req(structured, 0, cmdRead, 2, 0x8000, 0x40000)
	structured = req(structured, cmdFlagDF, cmdRead, 3, 0x8000, 0x40000)
	structured = req(structured, 0, cmdWrite, 4, 0, 4)
	structured = append(structured, "abcd"...)
	structured = req(structured, 0, cmdFlush, 5, 0, 0)
	structured = req(structured, 0, cmdDisc, 6, 0, 0)

	exportName := opt(be.AppendUint32(nil, 0), optExportName, []byte("small"))
	exportName = req(exportName, 0, cmdRead, 1, 0, 512)

	list := opt(bytes.Clone(flags), optList, nil)
	list = opt(list, optStartTLS, nil)
	list = opt(list, 99, []byte("xyz"))
	list = opt(list, optAbort, nil)
	return [][]byte{simple, structured, exportName, list}
}

// FuzzServer feeds arbitrary client bytes to ServeConn over net.Pipe: it
// must neither panic nor hang, whatever the bytes.
func FuzzServer(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	srv := &Server{
		Resolve: func(ctx context.Context, name string, peer Peer) (*Export, error) {
			switch name {
			case "", "small":
				return &Export{Name: name, Image: smallImage()}, nil
			case "bad":
				return &Export{Image: &failImage{memImage: smallImage(), from: failFrom, to: failTo}}, nil
			}
			return nil, ErrUnknownExport
		},
		List:             func(ctx context.Context, peer Peer) []string { return []string{"", "small", "bad"} },
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		HandshakeTimeout: time.Second,
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		sc, cc := net.Pipe()
		done := make(chan struct{})
		go func() {
			srv.ServeConn(context.Background(), sc)
			close(done)
		}()
		cc.SetDeadline(time.Now().Add(10 * time.Second))
		go io.Copy(io.Discard, cc)
		cc.Write(in) // fails if the server hangs up first
		cc.Close()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("ServeConn did not return for input %x", in)
		}
	})
}

// TestResolverPanic checks that a panicking resolver costs one connection,
// not the server.
func TestResolverPanic(t *testing.T) {
	ts := startServer(t, func(s *Server) {
		resolve := s.Resolve
		s.Resolve = func(ctx context.Context, name string, peer Peer) (*Export, error) {
			if name == "panic" {
				panic("resolver bug")
			}
			return resolve(ctx, name, peer)
		}
	})
	rc := dialRaw(t, "unix", ts.sock)
	rc.greet(clientFlagFixedNewstyle)
	rc.sendOpt(optGo, infoData("panic"))
	rc.expectClosed()
	checkFresh(t, ts)
	if err := ts.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ts.log.String(), "resolver bug") {
		t.Errorf("panic not logged:\n%s", ts.log.String())
	}
}

// countingImage counts ExtentAt calls.
type countingImage struct {
	*memImage
	calls atomic.Int64
}

func (c *countingImage) ExtentAt(off int64) (int64, bool) {
	c.calls.Add(1)
	return c.memImage.ExtentAt(off)
}

// TestRunCache checks that sequential large reads and block status queries
// inside one run ask the image for it once, and that the data is right.
func TestRunCache(t *testing.T) {
	img := &countingImage{memImage: smallImage()}
	srv := &Server{
		Resolve: func(ctx context.Context, name string, peer Peer) (*Export, error) { return &Export{Image: img}, nil },
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	sc, cc := net.Pipe()
	go srv.ServeConn(context.Background(), sc)
	rc := &rawClient{t: t, c: cc, r: bufio.NewReader(cc)}
	cc.SetDeadline(time.Now().Add(rawDeadline))
	defer cc.Close()
	rc.open("", true, true)
	// [0x40000, 2 MiB) is one data run; 2 MiB starts a 1 MiB zero run.
	for off := uint64(0x40000); off < 2<<20; off += minSparseRead {
		rc.sendReq(0, cmdRead, off, off, minSparseRead, nil)
		data, errno, _ := rc.structuredRead(off, off, minSparseRead)
		if errno != 0 || !bytes.Equal(data, smallImage().data[off:off+minSparseRead]) {
			t.Fatalf("read at %#x: error %d or wrong data", off, errno)
		}
		rc.sendReq(0, cmdBlockStatus, off+1, off, 4096, nil)
		if c := rc.readChunk(); c.typ != replyTypeBlockStatus || be.Uint32(c.payload[4:]) != uint32(2<<20-off) {
			t.Fatalf("block status at %#x: %+v", off, c)
		}
	}
	if n := img.calls.Load(); n != 1 {
		t.Errorf("%d ExtentAt calls for one run, want 1", n)
	}
}

// TestMaxConns: connections past the cap are closed at once; a freed slot
// is used again.
func TestMaxConns(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.MaxConns = 2 })
	a := dialRaw(t, "unix", ts.sock)
	a.read(handshakeLen)
	b := dialRaw(t, "unix", ts.sock)
	b.read(handshakeLen)
	over := dialRaw(t, "unix", ts.sock)
	over.expectClosed()
	a.c.Close()
	// The server notices a's close when its handshake read fails.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := dialRaw(t, "unix", ts.sock)
		c.c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, handshakeLen)
		if _, err := io.ReadFull(c.c, buf); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection accepted after one of two closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(ts.log.String(), "too many connections") {
		t.Errorf("no log line for the refused connection:\n%s", ts.log.String())
	}
}

// TestGlobalBufferBudget: connections share one buffer budget: while one
// connection's reads hold it, another's read waits, then both get their
// bytes.
func TestGlobalBufferBudget(t *testing.T) {
	const budget = maxPayload + maxReplyHeaderRoom
	ts := startServer(t, func(s *Server) {
		s.MaxBufferBytes = budget
		s.MaxTotalBufferBytes = budget
	})
	const n = 4 << 20 // the whole small image
	const cost = n + maxReplyHeaderRoom
	const held = budget / cost // reads of a that fit the budget
	a := dialRaw(t, "unix", ts.sock)
	a.open("gate", false, false)
	for i := 0; i < held; i++ {
		a.sendReq(0, cmdRead, uint64(i), 0, n, nil)
	}
	<-ts.gate.entered
	deadline := time.Now().Add(10 * time.Second)
	for {
		ts.srv.global.mu.Lock()
		used := ts.srv.global.used
		ts.srv.global.mu.Unlock()
		if used == held*cost {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a's reads hold %d bytes of the budget, want %d", used, held*cost)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b := dialRaw(t, "unix", ts.sock)
	b.open("small", false, false)
	b.sendReq(0, cmdRead, 99, 0, n, nil)
	b.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := b.c.Read(make([]byte, 1)); err == nil {
		t.Fatal("b was answered while a held the shared budget")
	}
	b.c.SetReadDeadline(time.Time{})
	close(ts.gate.gate)
	for i := 0; i < held; i++ {
		errno, _ := a.readSimple()
		if errno != 0 {
			t.Fatalf("a: errno %d", errno)
		}
		a.read(n)
	}
	b.expectSimple(99, 0)
	if got := b.read(n); !bytes.Equal(got, smallImage().data[:n]) {
		t.Fatal("b: wrong data")
	}
}

// TestPinCap: a connection that asks INFO for many names holds at most
// maxPins of them; a name asked again after being dropped still works.
func TestPinCap(t *testing.T) {
	var live atomic.Int64
	ts := startServer(t, func(s *Server) {
		s.Resolve = func(ctx context.Context, name string, peer Peer) (*Export, error) {
			live.Add(1)
			return &Export{Name: name, Image: smallImage(), Release: func() { live.Add(-1) }}, nil
		}
	})
	rc := dialRaw(t, "unix", ts.sock)
	rc.greet(clientFlagFixedNewstyle | clientFlagNoZeroes)
	for i := 0; i < 30; i++ {
		rc.sendOpt(optInfo, infoData(fmt.Sprintf("n%d", i)))
		rc.infoReplies(optInfo)
		if n := live.Load(); n > maxPins {
			t.Fatalf("after %d INFO options the connection holds %d exports, want at most %d", i+1, n, maxPins)
		}
	}
	rc.sendOpt(optGo, infoData("n0"))
	if size, _ := rc.infoReplies(optGo); size != uint64(smallImage().Size()) {
		t.Fatalf("GO n0 after it was dropped: size %d", size)
	}
	rc.sendReq(0, cmdRead, 7, 0, 512, nil)
	rc.expectSimple(7, 0)
	if !bytes.Equal(rc.read(512), smallImage().data[:512]) {
		t.Fatal("wrong data")
	}
	if n := live.Load(); n != 1 {
		t.Errorf("after GO the connection holds %d exports, want 1", n)
	}
}
