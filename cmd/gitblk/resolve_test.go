package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/internal/testutil"
	"github.com/gitblk/gitblk/nbd"
)

// The resolver's answer for each (peer, export): what a client is told.
func TestResolveReplies(t *testing.T) {
	s := setupSecrets(t)
	doc := fmt.Sprintf(`[tls]
certificates = %q
[export.site]
repository = %q
ref = "main"
[export.members]
repository = %q
ref = "main"
allow = [{ uid = [1000] }]
[export.tls-only]
repository = %q
ref = "main"
require-tls = true
[export.keys]
repository = %q
ref = "main"
secret = true
decrypt = %q
allow = [{ cert-cn = ["vm-*"] }, { uid = [0] }]
`, filepath.Join(s.dir, "server-tls"), s.site, s.site, s.site, s.keys, s.identity)
	cfgPath := filepath.Join(s.dir, "r.toml")
	os.WriteFile(cfgPath, []byte(doc), 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	repos := newRepoSet(0, filepath.Join(s.dir, "cache"))
	defer repos.close()
	set, err := prepare(cfg, repos)
	if err != nil {
		t.Fatal(err)
	}
	var logs testutil.LogBuffer
	srv := newServer(slog.New(slog.NewTextHandler(&logs, nil)), set, repos, func() (*config.Config, error) { return config.Load(cfgPath) })

	vm1 := leafCert(t, filepath.Join(s.ca, "vm1-cert.pem"))
	intruder := leafCert(t, filepath.Join(s.ca, "intruder-cert.pem"))
	unix := func(uid uint32) nbd.Peer {
		return nbd.Peer{Network: "unix", Addr: &net.UnixAddr{Net: "unix"}, Cred: &nbd.Cred{PID: 1, UID: uid, GID: uid}}
	}
	tcp := nbd.Peer{Network: "tcp", Addr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5000}}
	withCert := func(p nbd.Peer, c *x509.Certificate) nbd.Peer {
		p.TLS = &tls.ConnectionState{HandshakeComplete: true}
		if c != nil {
			p.TLS.PeerCertificates = []*x509.Certificate{c}
			p.TLS.VerifiedChains = [][]*x509.Certificate{{c}}
		}
		return p
	}
	// A certificate the handshake did not verify counts for nothing.
	unverified := withCert(tcp, nil)
	unverified.TLS.PeerCertificates = []*x509.Certificate{vm1}

	tests := []struct {
		export string
		peer   nbd.Peer
		want   error // nil: served
	}{
		{"site", unix(1234), nil},
		{"site", tcp, nil},
		{"members", unix(1000), nil},
		{"members", unix(1001), nbd.ErrPolicy},
		{"members", tcp, nbd.ErrPolicy},
		{"tls-only", unix(0), nbd.ErrTLSRequired},
		{"tls-only", withCert(unix(0), nil), nil},
		{"keys", unix(0), nil},
		{"keys", unix(1000), nbd.ErrUnknownExport},
		{"keys", tcp, nbd.ErrUnknownExport}, // secret on TCP needs TLS, and says only "unknown"
		{"keys", withCert(tcp, nil), nbd.ErrUnknownExport},
		{"keys", withCert(tcp, intruder), nbd.ErrUnknownExport},
		{"keys", unverified, nbd.ErrUnknownExport},
		{"keys", withCert(tcp, vm1), nil},
		{"nothere", withCert(tcp, vm1), nbd.ErrUnknownExport},
		{"keys/refs/heads/main", withCert(tcp, vm1), nbd.ErrUnknownExport},
	}
	for _, tt := range tests {
		x, err := srv.resolve(context.Background(), tt.export, tt.peer)
		switch {
		case tt.want == nil && err != nil:
			t.Errorf("%s for %s: %v, want it served", tt.export, peerOf(tt.peer), err)
		case tt.want != nil && !errors.Is(err, tt.want):
			t.Errorf("%s for %s: %v, want %v", tt.export, peerOf(tt.peer), err, tt.want)
		case tt.want == nil:
			if x.Image.Size() == 0 {
				t.Errorf("%s: empty image", tt.export)
			}
			x.Release()
		}
		if tt.want != nil && (errors.Is(err, nbd.ErrPolicy) || errors.Is(err, nbd.ErrUnknownExport)) && tt.export != "nothere" &&
			!strings.HasPrefix(tt.export, "keys/") && !strings.Contains(logs.String(), "export="+tt.export) {
			t.Errorf("%s for %s: refusal not logged", tt.export, peerOf(tt.peer))
		}
	}
	// Every holder released: no plaintext is held.
	if srv.budget.Used() != 0 || srv.pool.Held() != 0 {
		t.Errorf("after every release: %d secret bytes, %d images held", srv.budget.Used(), srv.pool.Held())
	}
	// Two connections share one decryption; it is freed with the last.
	a, err := srv.resolve(context.Background(), "keys", unix(0))
	if err != nil {
		t.Fatal(err)
	}
	b, err := srv.resolve(context.Background(), "keys", withCert(tcp, vm1))
	if err != nil {
		t.Fatal(err)
	}
	used := srv.budget.Used()
	if used != int64(len(s.plainKey)+len(s.plainToken)) || srv.pool.Held() != 1 {
		t.Errorf("two holders: %d bytes, %d images; want %d, 1", used, srv.pool.Held(), len(s.plainKey)+len(s.plainToken))
	}
	a.Release()
	if srv.budget.Used() != used {
		t.Error("freed while a holder is left")
	}
	b.Release()
	if srv.budget.Used() != 0 {
		t.Error("not freed with the last holder")
	}
	// The secret memory cap: an image that does not fit is unavailable.
	srv.budget.SetMax(10)
	if _, err := srv.resolve(context.Background(), "keys", unix(0)); !errors.Is(err, nbd.ErrUnknownExport) ||
		!strings.Contains(logs.String(), "memory cap") {
		t.Errorf("over the memory cap: %v", err)
	}
	// Listing leaves secret exports out for everyone.
	if got := strings.Join(srv.list(context.Background(), withCert(tcp, vm1)), ","); got != "members,site,tls-only" {
		t.Errorf("list = %q", got)
	}
}

func leafCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A client that sends a certificate from another CA fails the handshake
// (gnutls clients send none the server does not ask for by CA name, so
// this is a Go client that sends it anyway); one from the server's CA, or
// none, completes it.
func TestTLSHandshakeClientCA(t *testing.T) {
	s := setupSecrets(t)
	port := testutil.FreePort(t)
	cfgPath := filepath.Join(s.dir, "h.toml")
	os.WriteFile(cfgPath, []byte(s.config(filepath.Join(s.dir, "h.sock"), port, "")), 0o600)
	startServe(t, "--config", cfgPath)
	roots := x509.NewCertPool()
	roots.AddCert(leafCert(t, filepath.Join(s.ca, "ca-cert.pem")))
	load := func(dir string) *tls.Certificate {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, "vm1-cert.pem"), filepath.Join(dir, "vm1-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	for _, tt := range []struct {
		what string
		cert *tls.Certificate
		ok   bool
	}{{"server's CA", load(s.ca), true}, {"no certificate", nil, true}, {"another CA", load(s.otherCA), false}} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			err := startTLS(fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: roots, ServerName: "localhost",
				MinVersion: v, MaxVersion: v,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if tt.cert == nil {
						return &tls.Certificate{}, nil
					}
					return tt.cert, nil
				}})
			if (err == nil) != tt.ok {
				t.Errorf("%s, TLS %x: %v, want ok=%v", tt.what, v, err, tt.ok)
			}
		}
	}
}

// startTLS does the fixed newstyle handshake (doc/proto.md), sends
// NBD_OPT_STARTTLS, and completes TLS, then lists exports over it so a
// client certificate the server rejects after the handshake shows too.
func startTLS(addr string, cfg *tls.Config) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	var greet [18]byte
	if _, err := io.ReadFull(c, greet[:]); err != nil {
		return err
	}
	be := binary.BigEndian
	opt := func(w io.Writer, code uint32) {
		var b [16]byte
		be.PutUint64(b[0:], 0x49484156454F5054) // IHAVEOPT
		be.PutUint32(b[8:], code)
		w.Write(b[:])
	}
	c.Write([]byte{0, 0, 0, 3}) // FIXED_NEWSTYLE | NO_ZEROES
	opt(c, 5)                   // NBD_OPT_STARTTLS
	var rep [20]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return err
	}
	if typ := be.Uint32(rep[12:]); typ != 1 {
		return fmt.Errorf("STARTTLS reply %#x", typ)
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	opt(tc, 3) // NBD_OPT_LIST
	r := bufio.NewReader(tc)
	if _, err := io.ReadFull(r, rep[:]); err != nil {
		return fmt.Errorf("after the handshake: %w", err)
	}
	return nil
}

// A repository a reload drops stays open while a connection holds an
// image of it, and is closed with the last hold.
func TestReloadClosesDroppedRepos(t *testing.T) {
	testutil.NeedTool(t, "git", "git")
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	gitRepo(t, one, map[string][]byte{"a": []byte("one")})
	gitRepo(t, two, map[string][]byte{"a": []byte("two")})
	cfgPath := filepath.Join(dir, "c.toml")
	write := func(repo string) {
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("[export.x]\nrepository = %q\nref = \"main\"\n", repo)), 0o600)
	}
	write(one)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	repos := newRepoSet(0, filepath.Join(dir, "cache"))
	defer repos.close()
	set, err := prepare(cfg, repos)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(slog.New(slog.NewTextHandler(io.Discard, nil)), set, repos, func() (*config.Config, error) { return config.Load(cfgPath) })
	peer := nbd.Peer{Network: "unix", Cred: &nbd.Cred{}}
	held, err := srv.resolve(context.Background(), "x", peer)
	if err != nil {
		t.Fatal(err)
	}
	oldRepo := set.exports["x"].r
	write(two)
	if err := srv.reload(); err != nil {
		t.Fatal(err)
	}
	if oldRepo.closed || repos.len() != 2 {
		t.Fatalf("a held repository was closed (closed=%v, open=%d)", oldRepo.closed, repos.len())
	}
	// The held image still reads; a new connection gets the new repository.
	buf := make([]byte, held.Image.Size())
	if _, err := held.Image.ReadAt(buf, 0); err != nil && err != io.EOF {
		t.Errorf("held image after the reload: %v", err)
	}
	fresh, err := srv.resolve(context.Background(), "x", peer)
	if err != nil {
		t.Fatal(err)
	}
	if r := srv.cur.Load().exports["x"].r; r == oldRepo || r.path != two {
		t.Errorf("the new config serves %s, want %s", r.path, two)
	}
	fresh.Release()
	held.Release()
	if !oldRepo.closed || repos.len() != 1 {
		t.Errorf("after the last hold: closed=%v, open=%d; want closed, 1", oldRepo.closed, repos.len())
	}
	// A reload that fails closes what it opened.
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("[export.x]\nrepository = %q\nref = \"main\"\n[export.y]\nrepository = %q\nref = \"nope\"\n", two, one)), 0o600)
	if err := srv.reload(); err == nil {
		t.Fatal("a reload with a bad ref succeeded")
	}
	if repos.len() != 1 {
		t.Errorf("after a failed reload: %d repositories open, want 1", repos.len())
	}
}
