package nbd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketPair is a connected pair of unix stream sockets: kernel buffers
// between them, as between a real client and the server.
func socketPair(t testing.TB) (server, client net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

func optBytes(b []byte, o uint32, data []byte) []byte {
	b = be.AppendUint64(b, magicIHAVEOPT)
	b = be.AppendUint32(b, o)
	b = be.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func reqBytes(b []byte, fl, typ uint16, cookie, off uint64, n uint32) []byte {
	b = be.AppendUint32(b, magicRequest)
	b = be.AppendUint16(b, fl)
	b = be.AppendUint16(b, typ)
	b = be.AppendUint64(b, cookie)
	b = be.AppendUint64(b, off)
	return be.AppendUint32(b, n)
}

// tlsFuzzSeeds are handshakes as real clients run them: libnbd (nbdinfo,
// nbdcopy) sends STARTTLS first, then STRUCTURED_REPLY, SET_META_CONTEXT
// and GO; nbd-client sends STARTTLS, then LIST or GO; qemu as libnbd. And
// the cases the raw tests check: options before TLS, plaintext injected
// after STARTTLS, EXPORT_NAME before TLS, a second STARTTLS.
func tlsFuzzSeeds() []struct {
	mode              uint8
	pre, inject, post []byte
} {
	flags := be.AppendUint32(nil, clientFlagFixedNewstyle|clientFlagNoZeroes)
	libnbd := optBytes(nil, optStructuredReply, nil)
	libnbd = optBytes(libnbd, optSetMetaContext, metaData("", metaContextBaseAlloc))
	libnbd = optBytes(libnbd, optGo, infoData("", infoName, infoDescription, infoBlockSize))
	libnbd = reqBytes(libnbd, 0, cmdBlockStatus, 1, 0, smallSize)
	libnbd = reqBytes(libnbd, 0, cmdRead, 2, 0x8000, 0x40000)
	libnbd = reqBytes(libnbd, 0, cmdDisc, 3, 0, 0)
	nbdClient := optBytes(nil, optList, nil)
	nbdClient = optBytes(nbdClient, optGo, infoData("small", infoBlockSize))
	nbdClient = reqBytes(nbdClient, 0, cmdRead, 1, 0, 4096)
	nbdClient = reqBytes(nbdClient, 0, cmdDisc, 2, 0, 0)
	again := optBytes(nil, optStartTLS, nil)
	again = optBytes(again, optExportName, []byte("small"))
	again = reqBytes(again, 0, cmdRead, 1, 0, 512)
	before := optBytes(bytes.Clone(flags), optList, nil)
	before = optBytes(before, optInfo, infoData("small"))
	before = optBytes(before, optStructuredReply, nil)
	return []struct {
		mode              uint8
		pre, inject, post []byte
	}{
		{uint8(TLSRequire), flags, nil, libnbd},
		{uint8(TLSOn), flags, nil, nbdClient},
		{uint8(TLSRequire), before, nil, nbdClient},
		{uint8(TLSOn), before, nil, libnbd},
		{uint8(TLSRequire), flags, optBytes(nil, optList, nil), nil},
		{uint8(TLSRequire), optBytes(bytes.Clone(flags), optExportName, []byte("small")), nil, nil},
		{uint8(TLSOn), flags, nil, again},
		{uint8(TLSOff), flags, nil, nbdClient},
		{uint8(TLSOn), optBytes(bytes.Clone(flags), optInfo, infoData("tlsonly")), nil, optBytes(nil, optGo, infoData("tlsonly"))},
	}
}

// FuzzTLSHandshake runs handshakes that include STARTTLS: pre (client
// flags and options) in plaintext, then STARTTLS with inject in the same
// write, then, if the server acknowledged and nothing was injected, a real
// TLS handshake and post inside TLS. The server must never panic, and
// ServeConnMode must return within its deadlines.
func FuzzTLSHandshake(f *testing.F) {
	for _, s := range tlsFuzzSeeds() {
		f.Add(s.mode, s.pre, s.inject, s.post)
	}
	certs := makeCerts(f)
	srv := &Server{
		Resolve: func(ctx context.Context, name string, peer Peer) (*Export, error) {
			switch name {
			case "", "small":
				return &Export{Name: name, Image: smallImage()}, nil
			case "tlsonly":
				if peer.TLS == nil {
					return nil, ErrTLSRequired
				}
				return &Export{Name: name, Image: smallImage()}, nil
			case "policy":
				return nil, ErrPolicy
			}
			return nil, ErrUnknownExport
		},
		List:             func(ctx context.Context, peer Peer) []string { return []string{"", "small"} },
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		HandshakeTimeout: 200 * time.Millisecond, // inputs out of step wait for it
		TLSConfig:        certs.server,
	}
	const bound = 15 * time.Second // handshake budget, linger, TLS close: far below this
	f.Fuzz(func(t *testing.T, mode uint8, pre, inject, post []byte) {
		sc, cc := socketPair(t)
		defer cc.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConnMode(context.Background(), sc, TLSMode(mode%3))
		}()
		cc.SetDeadline(time.Now().Add(bound))
		fuzzClient(cc, certs.client, pre, inject, post)
		cc.Close()
		select {
		case <-done:
		case <-time.After(bound):
			t.Fatalf("ServeConnMode did not return: mode %d pre %x inject %x post %x", mode, pre, inject, post)
		}
	})
}

// fuzzClient plays the client side: it writes pre and STARTTLS+inject
// while it reads replies, and starts TLS when STARTTLS is acknowledged. It
// returns how many bytes the server sent inside TLS.
func fuzzClient(cc net.Conn, cfg *tls.Config, pre, inject, post []byte) (tlsBytes int64) {
	r := bufio.NewReader(cc)
	if _, err := io.ReadFull(r, make([]byte, handshakeLen)); err != nil {
		return 0
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		if _, err := cc.Write(pre); err != nil {
			return
		}
		cc.Write(append(optBytes(nil, optStartTLS, nil), inject...))
	}()
	// The writer is not waited for on return: the caller's Close ends it
	// (the server may be blocked writing replies nobody reads any more).
	for {
		// A server in transmission (after GO or EXPORT_NAME in pre) waits
		// for requests as long as the client likes: give up on silence.
		cc.SetReadDeadline(time.Now().Add(idleWait))
		var h [optReplyHeaderLen]byte
		if _, err := io.ReadFull(r, h[:]); err != nil || be.Uint64(h[:]) != magicOptReply {
			drain(cc, r) // not in step
			return 0
		}
		n := int64(be.Uint32(h[16:]))
		if _, err := io.CopyN(io.Discard, r, n); err != nil {
			return 0
		}
		if be.Uint32(h[8:]) != optStartTLS {
			continue
		}
		<-wrote
		if be.Uint32(h[12:]) != repAck {
			// Refused: go on in plaintext, then say we are done (a server
			// in transmission waits for requests as long as we keep quiet).
			go cc.Write(post)
			drain(cc, r)
			return 0
		}
		if len(inject) > 0 || r.Buffered() > 0 {
			drain(cc, r)
			return 0
		}
		tc := tls.Client(cc, cfg)
		if err := tc.Handshake(); err != nil {
			return 0
		}
		go tc.Write(post)
		return drain(tc, tc)
	}
}

// idleWait is how long the fuzz client waits for a server that sends
// nothing before it gives up; the server's own waits are far shorter in
// the handshake (200 ms) and unbounded, by design, in transmission.
const idleWait = 500 * time.Millisecond

// drain reads r until the server closes or stays quiet for a moment (a
// server in transmission waits for requests as long as the client likes).
func drain(c net.Conn, r io.Reader) int64 {
	var total int64
	buf := make([]byte, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(idleWait))
		n, err := r.Read(buf)
		total += int64(n)
		if err != nil {
			return total
		}
	}
}

// TestTLSFuzzSeeds checks that the fuzz harness gets through TLS: libnbd's
// handshake seed reads its data inside TLS.
func TestTLSFuzzSeeds(t *testing.T) {
	certs := makeCerts(t)
	ts := startServer(t, func(s *Server) { s.TLSConfig = certs.server })
	seed := tlsFuzzSeeds()[0]
	sc, cc := socketPair(t)
	defer cc.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts.srv.ServeConnMode(context.Background(), sc, TLSMode(seed.mode))
	}()
	cc.SetDeadline(time.Now().Add(rawDeadline))
	n := fuzzClient(cc, certs.client, seed.pre, seed.inject, seed.post)
	cc.Close()
	<-done
	// The 256 KiB read covers 64 KiB of data and a hole.
	if n <= 0x10000 {
		t.Errorf("the server sent %d bytes inside TLS, want the read's 64 KiB of data and more", n)
	}
}
