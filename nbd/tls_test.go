package nbd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// startTLS sends NBD_OPT_STARTTLS, expects the ACK and runs the client
// side of the TLS handshake with cfg; it returns the handshake's error.
func (rc *rawClient) startTLS(cfg *tls.Config) error {
	rc.t.Helper()
	rc.sendOpt(optStartTLS, nil)
	rc.expectOpt(optStartTLS, repAck)
	if n := rc.r.Buffered(); n != 0 {
		rc.t.Fatalf("%d bytes after the STARTTLS ACK", n)
	}
	tc := tls.Client(rc.c, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	rc.c = tc
	rc.r = bufio.NewReader(tc)
	return nil
}

// mustStartTLS is startTLS that fails the test on an error.
func (rc *rawClient) mustStartTLS(cfg *tls.Config) {
	rc.t.Helper()
	if err := rc.startTLS(cfg); err != nil {
		rc.t.Fatalf("TLS handshake: %v", err)
	}
}

// readSmall reads 4 KiB of the small image with a simple reply and checks it.
func (rc *rawClient) readSmall(cookie uint64) {
	rc.t.Helper()
	rc.sendReq(0, cmdRead, cookie, 0x5000, 4096, nil)
	rc.expectSimple(cookie, 0)
	if got := rc.read(4096); !bytes.Equal(got, smallImage().data[0x5000:0x6000]) {
		rc.t.Fatal("wrong data")
	}
}

// checkFreshTLS proves a TLS server still serves a new client correctly.
func checkFreshTLS(t *testing.T, ts *testServer, certs *testCerts) {
	t.Helper()
	rc := dialRaw(t, "unix", ts.sock)
	rc.greet(clientFlagFixedNewstyle | clientFlagNoZeroes)
	rc.mustStartTLS(certs.client)
	rc.sendOpt(optGo, infoData(""))
	if size, _ := rc.infoReplies(optGo); size != smallSize {
		t.Fatalf("fresh client: size %d", size)
	}
	rc.readSmall(7)
	rc.sendReq(0, cmdDisc, 8, 0, 0, nil)
	rc.expectClosed()
}

// checkTLSPeer checks that a resolver saw the verified client certificate.
func checkTLSPeer(t *testing.T, p Peer, certs *testCerts, version uint16) {
	t.Helper()
	if p.TLS == nil {
		t.Fatalf("peer %s: no TLS state", p)
	}
	if len(p.TLS.PeerCertificates) == 0 || p.TLS.PeerCertificates[0].Subject.CommonName != certs.clientCN || len(p.TLS.VerifiedChains) == 0 {
		t.Errorf("peer %s: client certificates %v, verified chains %d", p, p.TLS.PeerCertificates, len(p.TLS.VerifiedChains))
	}
	if version != 0 && p.TLS.Version != version {
		t.Errorf("peer %s: %s, want %s", p, tls.VersionName(p.TLS.Version), tls.VersionName(version))
	}
}

// TestTLSRequireRaw drives a TLSRequire listener byte by byte: each case on
// a new connection, then a fresh client must be served.
func TestTLSRequireRaw(t *testing.T) {
	certs := makeCerts(t)
	var pl peerLog
	ts := startServerMode(t, TLSRequire, func(s *Server) {
		s.TLSConfig = certs.server
		s.HandshakeTimeout = 2 * time.Second
		recordPeers(&pl)(s)
	})
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, rc *rawClient)
		log  string // expected in the server's log
	}{
		{"options before STARTTLS", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			before := ts.resolves.Load()
			for _, o := range []struct {
				opt  uint32
				data []byte
			}{
				{optList, nil},
				{optInfo, infoData("small")},
				{optGo, infoData("small")},
				{optStructuredReply, nil},
				{optListMetaContext, metaData("small", "base:")},
				{optSetMetaContext, metaData("small", metaContextBaseAlloc)},
				{4, nil},
				{99, []byte("xyz")},
			} {
				rc.sendOpt(o.opt, o.data)
				rc.expectOpt(o.opt, repErrTLSReqd)
			}
			if n := ts.resolves.Load() - before; n != 0 || len(pl.get("(list)")) != 0 {
				t.Errorf("before TLS: %d resolves, %d lists", n, len(pl.get("(list)")))
			}
			rc.sendOpt(optAbort, nil)
			rc.expectOpt(optAbort, repAck)
			rc.expectClosed()
		}, ""},
		{"EXPORT_NAME before STARTTLS", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optExportName, []byte("small"))
			rc.expectClosed()
		}, "NBD_OPT_EXPORT_NAME before STARTTLS on a listener that requires TLS"},
		{"STARTTLS, then a second one", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.mustStartTLS(certs.client)
			rc.sendOpt(optStartTLS, nil)
			rc.expectOpt(optStartTLS, repErrInvalid)
			rc.sendOpt(optList, nil)
			for range testExportNames {
				rc.expectOpt(optList, repServer)
			}
			rc.expectOpt(optList, repAck)
			rc.sendOpt(optGo, infoData("small"))
			rc.infoReplies(optGo)
			rc.readSmall(1)
			ps := pl.get("small")
			if len(ps) == 0 {
				t.Fatal("the resolver saw no peer")
			}
			checkTLSPeer(t, ps[len(ps)-1], certs, 0)
			checkTLSPeer(t, pl.get("(list)")[0], certs, 0)
		}, ""},
		{"plaintext in the same write as STARTTLS", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			b := be.AppendUint64(nil, magicIHAVEOPT)
			b = be.AppendUint32(b, optStartTLS)
			b = be.AppendUint32(b, 0)
			b = be.AppendUint64(b, magicIHAVEOPT) // an injected LIST
			b = be.AppendUint32(b, optList)
			b = be.AppendUint32(b, 0)
			rc.write(b)
			rc.expectOpt(optStartTLS, repAck)
			rc.expectClosed() // and never a reply to the LIST
		}, "16 bytes of plaintext after NBD_OPT_STARTTLS"},
		{"STARTTLS with data", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optStartTLS, []byte("x"))
			rc.expectOpt(optStartTLS, repErrInvalid)
			rc.mustStartTLS(certs.client)
			rc.sendOpt(optGo, infoData(""))
			rc.infoReplies(optGo)
			rc.readSmall(1)
		}, ""},
		{"not TLS after STARTTLS", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optStartTLS, nil)
			rc.expectOpt(optStartTLS, repAck)
			rc.write([]byte("GET / HTTP/1.0\r\n\r\n"))
			rc.expectClosed()
		}, "TLS handshake"},
		{"client certificate from another CA", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			if err := rc.startTLS(certs.otherClient); err == nil {
				// TLS 1.3: the server checks the client's certificate
				// after the client's side of the handshake is done.
				rc.sendOpt(optList, nil)
				if _, err := rc.r.ReadByte(); err == nil {
					t.Fatal("the server answered a client with a certificate from another CA")
				}
			}
		}, "certificate signed by unknown authority"},
		{"no client certificate", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			cfg := certs.client.Clone()
			cfg.Certificates = nil
			if err := rc.startTLS(cfg); err == nil {
				rc.sendOpt(optList, nil)
				if _, err := rc.r.ReadByte(); err == nil {
					t.Fatal("the server answered a client without a certificate")
				}
			}
		}, "client didn't provide a certificate"},
		{"TLS 1.2", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle | clientFlagNoZeroes)
			cfg := certs.client.Clone()
			cfg.MaxVersion = tls.VersionTLS12
			rc.mustStartTLS(cfg)
			rc.sendOpt(optInfo, infoData("plain"))
			rc.infoReplies(optInfo)
			rc.sendOpt(optExportName, []byte("plain")) // EXPORT_NAME is fine after TLS
			if b := rc.read(exportNameReplyLen); be.Uint64(b) != smallSize {
				t.Fatalf("EXPORT_NAME reply %x", b)
			}
			rc.readSmall(1)
			ps := pl.get("plain")
			checkTLSPeer(t, ps[len(ps)-1], certs, tls.VersionTLS12)
		}, ""},
		{"silent after STARTTLS", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optStartTLS, nil)
			rc.expectOpt(optStartTLS, repAck)
			start := time.Now()
			rc.expectClosed()
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("closed after %v", d)
			}
		}, "TLS handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, network := range []string{"unix", "tcp"} {
				addr := ts.sock
				if network == "tcp" {
					addr = ts.tcp
				}
				tc.run(t, dialRaw(t, network, addr))
				checkFreshTLS(t, ts, certs)
			}
			if tc.log != "" {
				waitLog(t, ts, tc.log)
			}
		})
	}
}

// waitLog waits until the server's log holds s (connections log as they end).
func waitLog(t *testing.T, ts *testServer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ts.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the server's log does not say %q:\n%s", s, ts.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTLSOnRaw drives a TLSOn listener: options work before STARTTLS, an
// export that needs TLS says so, and STARTTLS forgets what was negotiated.
func TestTLSOnRaw(t *testing.T) {
	certs := makeCerts(t)
	var pl peerLog
	ts := startServerMode(t, TLSOn, func(s *Server) {
		s.TLSConfig = certs.server
		recordPeers(&pl)(s)
	})
	t.Run("plaintext", func(t *testing.T) {
		rc := dialRaw(t, "tcp", ts.tcp)
		rc.open("small", false, false)
		rc.readSmall(1)
		checkFresh(t, ts)
	})
	t.Run("export that needs TLS", func(t *testing.T) {
		rc := dialRaw(t, "tcp", ts.tcp)
		rc.greet(clientFlagFixedNewstyle)
		rc.sendOpt(optInfo, infoData("tlsonly"))
		rc.expectOpt(optInfo, repErrTLSReqd)
		rc.sendOpt(optGo, infoData("tlsonly"))
		rc.expectOpt(optGo, repErrTLSReqd)
		rc.mustStartTLS(certs.client)
		rc.sendOpt(optGo, infoData("tlsonly"))
		rc.infoReplies(optGo)
		rc.readSmall(1)
		ps := pl.get("tlsonly")
		checkTLSPeer(t, ps[len(ps)-1], certs, 0)

		rc = dialRaw(t, "tcp", ts.tcp)
		rc.greet(clientFlagFixedNewstyle)
		rc.sendOpt(optExportName, []byte("tlsonly"))
		rc.expectClosed()
		checkFresh(t, ts)
	})
	t.Run("never TLS_REQD after TLS", func(t *testing.T) {
		rc := dialRaw(t, "unix", ts.sock)
		rc.greet(clientFlagFixedNewstyle)
		rc.sendOpt(optGo, infoData("alwaystls"))
		rc.expectOpt(optGo, repErrTLSReqd)
		rc.mustStartTLS(certs.client)
		rc.sendOpt(optInfo, infoData("alwaystls"))
		rc.expectOpt(optInfo, repErrPolicy)
		rc.sendOpt(optGo, infoData("alwaystls"))
		rc.expectOpt(optGo, repErrPolicy)
		checkFresh(t, ts)
	})
	t.Run("STARTTLS forgets", func(t *testing.T) {
		rc := dialRaw(t, "unix", ts.sock)
		rc.greet(clientFlagFixedNewstyle | clientFlagNoZeroes)
		rc.sendOpt(optStructuredReply, nil)
		rc.expectOpt(optStructuredReply, repAck)
		rc.sendOpt(optSetMetaContext, metaData("small", metaContextBaseAlloc))
		rc.expectOpt(optSetMetaContext, repMetaContext)
		rc.expectOpt(optSetMetaContext, repAck)
		// Earlier subtests' connections may still be closing (and releasing
		// their exports): wait until this connection's pin is the only one.
		for deadline := time.Now().Add(5 * time.Second); ts.resolves.Load()-ts.releases.Load() != 1 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if held := ts.resolves.Load() - ts.releases.Load(); held != 1 {
			t.Fatalf("%d exports held before STARTTLS, want this connection's 1", held)
		}
		resolves, releases := ts.resolves.Load(), ts.releases.Load()
		rc.mustStartTLS(certs.client)
		// The server may finish its side of TLS after the client did.
		for deadline := time.Now().Add(5 * time.Second); ts.releases.Load()-releases != 1 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if got := ts.releases.Load() - releases; got != 1 {
			t.Errorf("STARTTLS released %d pinned exports, want 1", got)
		}
		// Structured replies are forgotten: SET_META_CONTEXT needs them first.
		rc.sendOpt(optSetMetaContext, metaData("small", metaContextBaseAlloc))
		rc.expectOpt(optSetMetaContext, repErrInvalid)
		rc.sendOpt(optGo, infoData("small"))
		if _, flags := rc.infoReplies(optGo); flags&tflagSendDF != 0 {
			t.Errorf("transmission flags %#x: structured replies survived STARTTLS", flags)
		}
		if got := ts.resolves.Load() - resolves; got != 1 {
			t.Errorf("GO after STARTTLS resolved %d times, want 1 (the pin is forgotten)", got)
		}
		rc.readSmall(1) // a simple reply: structured replies are off
		rc.sendReq(0, cmdBlockStatus, 2, 0, 4096, nil)
		rc.expectSimple(2, errInval) // and so is base:allocation
		ps := pl.get("small")
		checkTLSPeer(t, ps[len(ps)-1], certs, 0)
		if ps[len(ps)-2].TLS != nil {
			t.Error("the resolution before STARTTLS saw TLS")
		}
	})
	t.Run("LIST before and after TLS", func(t *testing.T) {
		n := len(pl.get("(list)"))
		rc := dialRaw(t, "unix", ts.sock)
		rc.greet(clientFlagFixedNewstyle)
		for i := range 2 {
			if i == 1 {
				rc.mustStartTLS(certs.client)
			}
			rc.sendOpt(optList, nil)
			for range testExportNames {
				rc.expectOpt(optList, repServer)
			}
			rc.expectOpt(optList, repAck)
		}
		ps := pl.get("(list)")[n:]
		if len(ps) != 2 || ps[0].TLS != nil {
			t.Fatalf("List saw %d peers", len(ps))
		}
		checkTLSPeer(t, ps[1], certs, 0)
	})
	t.Run("Shutdown ends TLS connections", func(t *testing.T) {
		rc := dialRaw(t, "unix", ts.sock)
		rc.greet(clientFlagFixedNewstyle | clientFlagNoZeroes)
		rc.mustStartTLS(certs.client)
		rc.sendOpt(optGo, infoData("small"))
		rc.infoReplies(optGo)
		rc.readSmall(1)
		idle := dialRaw(t, "tcp", ts.tcp) // in the TLS handshake
		idle.greet(clientFlagFixedNewstyle)
		idle.sendOpt(optStartTLS, nil)
		idle.expectOpt(optStartTLS, repAck)
		if err := ts.srv.Shutdown(t.Context()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		rc.expectClosed()
		idle.expectClosed()
		waitLog(t, ts, `tls="TLS 1.3" tls_client="CN=guest-1.example,O=gitblk test" export=small description="test image (commit 0123456789abcdef)" commit=0123456789abcdef end="server shutdown"`)
	})
}

// TestTLSModeWithoutConfig: a TLS mode needs a TLSConfig.
func TestTLSModeWithoutConfig(t *testing.T) {
	srv := &Server{}
	for _, mode := range []TLSMode{TLSOn, TLSRequire, 7} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.ServeMode(t.Context(), l, mode); err == nil {
			t.Errorf("ServeMode(%s) without a TLSConfig: no error", mode)
		}
		if _, err := l.Accept(); err == nil {
			t.Errorf("ServeMode(%s) left its listener open", mode)
		}
	}
}
