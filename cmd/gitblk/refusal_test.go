package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// NBD constants for the raw client below (doc/proto.md).
const (
	rawIHaveOpt        = 0x49484156454F5054
	rawOptReplyMagic   = 0x3e889045565a9
	rawOptExportName   = 1
	rawOptList         = 3
	rawOptStartTLS     = 5
	rawOptInfo         = 6
	rawOptGo           = 7
	rawOptStructured   = 8
	rawOptListMeta     = 9
	rawRepAck          = 1
	rawRepErrUnknown   = 1<<31 + 6
	rawRepErrPolicy    = 1<<31 + 2
	rawRepErrTLSReqd   = 1<<31 + 5
	rawRepErrFlag      = 1 << 31
	rawHandshakeTimeup = 10 * time.Second
)

// rawNBD is a fixed-newstyle client that records the server's replies
// byte for byte.
type rawNBD struct {
	t *testing.T
	c net.Conn
}

func dialNBD(t *testing.T, network, addr string) *rawNBD {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(rawHandshakeTimeup))
	var greet [18]byte
	if _, err := io.ReadFull(c, greet[:]); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	c.Write([]byte{0, 0, 0, 3}) // FIXED_NEWSTYLE | NO_ZEROES
	return &rawNBD{t: t, c: c}
}

func (r *rawNBD) send(opt uint32, data []byte) {
	b := make([]byte, 16+len(data))
	binary.BigEndian.PutUint64(b, rawIHaveOpt)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], uint32(len(data)))
	copy(b[16:], data)
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("option %d: %v", opt, err)
	}
}

// replies sends opt and returns every reply to it, up to the ACK or the
// first error, as the bytes on the wire, and the last reply's type.
func (r *rawNBD) replies(opt uint32, data []byte) ([]byte, uint32) {
	r.t.Helper()
	r.send(opt, data)
	var all []byte
	for {
		var h [20]byte
		if _, err := io.ReadFull(r.c, h[:]); err != nil {
			r.t.Fatalf("reply to option %d: %v (so far %q)", opt, err, all)
		}
		if m := binary.BigEndian.Uint64(h[:]); m != rawOptReplyMagic {
			r.t.Fatalf("reply magic %#x", m)
		}
		n := binary.BigEndian.Uint32(h[16:])
		p := make([]byte, n)
		if _, err := io.ReadFull(r.c, p); err != nil {
			r.t.Fatal(err)
		}
		all = append(append(all, h[:]...), p...)
		typ := binary.BigEndian.Uint32(h[12:])
		if typ == rawRepAck || typ&rawRepErrFlag != 0 {
			return all, typ
		}
	}
}

// rest reads what the server sends until it hangs up (or the deadline).
func (r *rawNBD) rest() []byte {
	b, _ := io.ReadAll(r.c)
	return b
}

func (r *rawNBD) startTLS(cfg *tls.Config) {
	r.t.Helper()
	if _, typ := r.replies(rawOptStartTLS, nil); typ != rawRepAck {
		r.t.Fatalf("STARTTLS: reply %#x", typ)
	}
	tc := tls.Client(r.c, cfg)
	if err := tc.Handshake(); err != nil {
		r.t.Fatalf("TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Now().Add(rawHandshakeTimeup))
	r.c = tc
}

func infoRequest(name string) []byte {
	b := make([]byte, 4+len(name)+2)
	binary.BigEndian.PutUint32(b, uint32(len(name)))
	copy(b[4:], name)
	return b
}

func metaRequest(name string) []byte {
	q := "base:allocation"
	b := make([]byte, 0, 12+len(name)+len(q))
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
	return append(b, q...)
}

// A refused secret export and a name that does not exist get the same
// bytes in every path a client can take: INFO, GO, LIST_META_CONTEXT and
// EXPORT_NAME; before TLS and after it, without a certificate and with one
// no rule admits; on a listener where TLS is optional (on, unix and TCP)
// and where it is required. LIST never names a secret export. A public
// export is refused with POLICY, or TLS_REQD when TLS would admit.
func TestSecretRefusalsLookUnknown(t *testing.T) {
	s := setupSecrets(t)
	sh(t, s.keys, nil, "git", "tag", "v1")
	sock := filepath.Join(s.dir, "r.sock")
	onPort, reqPort := testutil.FreePort(t), testutil.FreePort(t)
	cfg := fmt.Sprintf(`cache-dir = %q
[tls]
certificates = %q
[[listen]]
address = "unix:%s"
[[listen]]
address = "127.0.0.1:%d"
tls = "on"
[[listen]]
address = "127.0.0.1:%d"
[export.site]
repository = %q
ref = "main"
[export.pub-cert]
repository = %q
ref = "main"
allow = [{ cert-cn = ["vm-*"] }]
[export.pub-uid]
repository = %q
ref = "main"
allow = [{ uid = [4242] }]
[export.keys]
repository = %q
ref = "main"
secret = true
decrypt = %q
allow = [{ cert-cn = ["vm-*"] }]
[export.keys-tags]
repository = %q
refs = ["refs/tags/*"]
secret = true
decrypt = %q
allow = [{ cert-cn = ["vm-*"] }]
`, filepath.Join(s.dir, "cache"), filepath.Join(s.dir, "server-tls"), sock, onPort, reqPort,
		s.site, s.site, s.site, s.keys, s.identity, s.keys, s.identity)
	cfgPath := filepath.Join(s.dir, "r.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	startServe(t, "--config", cfgPath)

	roots := x509.NewCertPool()
	roots.AddCert(leafCert(t, filepath.Join(s.ca, "ca-cert.pem")))
	tlsWith := func(name string) *tls.Config {
		c := &tls.Config{RootCAs: roots, ServerName: "localhost"}
		if name != "" {
			kp, err := tls.LoadX509KeyPair(filepath.Join(s.ca, name+"-cert.pem"), filepath.Join(s.ca, name+"-key.pem"))
			if err != nil {
				t.Fatal(err)
			}
			c.Certificates = []tls.Certificate{kp}
		}
		return c
	}
	type listener struct{ what, network, addr string }
	on := []listener{{"unix (on)", "unix", sock}, {"tcp on", "tcp", fmt.Sprintf("127.0.0.1:%d", onPort)}}
	req := listener{"tcp require", "tcp", fmt.Sprintf("127.0.0.1:%d", reqPort)}
	type client struct {
		what string
		tls  *tls.Config // nil: plaintext
	}
	clients := []client{{"plaintext", nil}, {"TLS without a certificate", tlsWith("")}, {"TLS as intruder", tlsWith("intruder")}}
	// Secret names and names that do not exist, of the same length, so
	// the replies must be equal once the name is swapped.
	pairs := [][2]string{{"keys", "kezs"}, {"keys-tags/refs/tags/v1", "keys-tagz/refs/tags/v1"},
		{"keys-tags/refs/tags/v2", "keys-tags/refs/tagz/v2"}}
	connect := func(l listener, c client) *rawNBD {
		r := dialNBD(t, l.network, l.addr)
		if c.tls != nil {
			r.startTLS(c.tls)
		}
		return r
	}
	// probe is what a client learns of name on a fresh connection, by
	// each option.
	probe := func(l listener, c client, name string) map[string][]byte {
		out := map[string][]byte{}
		r := connect(l, c)
		out["INFO"], _ = r.replies(rawOptInfo, infoRequest(name))
		r.replies(rawOptStructured, nil)
		out["LIST_META_CONTEXT"], _ = r.replies(rawOptListMeta, metaRequest(name))
		out["GO"], _ = r.replies(rawOptGo, infoRequest(name))
		r = connect(l, c)
		r.send(rawOptExportName, []byte(name))
		out["EXPORT_NAME"] = r.rest()
		return out
	}
	check := func(l listener, c client, wantType uint32) {
		for _, p := range pairs {
			secret, unknown := probe(l, c, p[0]), probe(l, c, p[1])
			for opt, got := range secret {
				want := unknown[opt]
				if opt == "EXPORT_NAME" {
					if len(got) != 0 || len(want) != 0 {
						t.Errorf("%s, %s, EXPORT_NAME %q: got %q, unknown name %q; want a hang-up", l.what, c.what, p[0], got, want)
					}
					continue
				}
				swapped := bytes.ReplaceAll(got, []byte(p[0]), []byte(p[1]))
				if !bytes.Equal(swapped, want) {
					t.Errorf("%s, %s, %s %q:\n got %q\nwant %q (as for %q)", l.what, c.what, opt, p[0], got, want, p[1])
				}
				if typ := binary.BigEndian.Uint32(want[12:]); typ != wantType {
					t.Errorf("%s, %s, %s %q: reply %#x, want %#x", l.what, c.what, opt, p[1], typ, wantType)
				}
			}
		}
		r := connect(l, c)
		list, _ := r.replies(rawOptList, nil)
		if c.tls != nil || l.what != req.what {
			if !bytes.Contains(list, []byte("site")) || bytes.Contains(list, []byte("keys")) {
				t.Errorf("%s, %s: LIST %q: want site, never keys", l.what, c.what, list)
			}
		}
	}
	for _, l := range on {
		for _, c := range clients {
			check(l, c, rawRepErrUnknown)
		}
	}
	// Under require, every option before STARTTLS gets TLS_REQD, for any
	// name; after it, as on an optional listener.
	check(req, clients[0], rawRepErrTLSReqd)
	check(req, clients[1], rawRepErrUnknown)
	check(req, clients[2], rawRepErrUnknown)

	// The comparison can tell: the admitted client reads the secret, and a
	// public export is refused with its own codes.
	for _, l := range append(on, req) {
		r := connect(l, client{"vm-1", tlsWith("vm1")})
		for _, name := range []string{"keys", "keys-tags/refs/tags/v1"} {
			if b, typ := r.replies(rawOptInfo, infoRequest(name)); typ != rawRepAck {
				t.Errorf("%s: vm-1 INFO %q: %q", l.what, name, b)
			}
		}
		if b, typ := r.replies(rawOptInfo, infoRequest("keys-tags/refs/tags/v2")); typ != rawRepErrUnknown {
			t.Errorf("%s: vm-1 INFO of a tag that does not exist: %q", l.what, b)
		}
	}
	for _, l := range on {
		r := connect(l, client{"plaintext", nil})
		if b, typ := r.replies(rawOptInfo, infoRequest("pub-cert")); typ != rawRepErrTLSReqd {
			t.Errorf("%s: plaintext INFO pub-cert: %q, want TLS_REQD", l.what, b)
		}
		if b, typ := r.replies(rawOptInfo, infoRequest("pub-uid")); typ != rawRepErrPolicy {
			t.Errorf("%s: plaintext INFO pub-uid: %q, want POLICY", l.what, b)
		}
		if _, typ := r.replies(rawOptInfo, infoRequest("site")); typ != rawRepAck {
			t.Errorf("%s: plaintext INFO site: %#x", l.what, typ)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("compared %d names x %d paths x %d listener states", len(pairs), 4, len(on)*len(clients)+len(clients))
}

// read sends NBD_CMD_READ on a connection in transmission (after GO) and
// returns the data of the simple reply, or its error.
func (r *rawNBD) read(off uint64, n uint32) ([]byte, uint32) {
	r.t.Helper()
	var req [28]byte
	binary.BigEndian.PutUint32(req[0:], 0x25609513) // NBD_REQUEST_MAGIC
	binary.BigEndian.PutUint16(req[6:], 0)          // NBD_CMD_READ
	binary.BigEndian.PutUint64(req[8:], 1)          // cookie
	binary.BigEndian.PutUint64(req[16:], off)
	binary.BigEndian.PutUint32(req[24:], n)
	r.c.SetDeadline(time.Now().Add(rawHandshakeTimeup))
	if _, err := r.c.Write(req[:]); err != nil {
		r.t.Fatal(err)
	}
	var rep [16]byte
	if _, err := io.ReadFull(r.c, rep[:]); err != nil {
		r.t.Fatalf("read reply: %v", err)
	}
	if m := binary.BigEndian.Uint32(rep[:]); m != 0x67446698 {
		r.t.Fatalf("reply magic %#x", m)
	}
	if e := binary.BigEndian.Uint32(rep[4:]); e != 0 {
		return nil, e
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r.c, data); err != nil {
		r.t.Fatal(err)
	}
	return data, 0
}

// A commit with a damaged .age file makes the secret export unavailable to
// new connections (unknown, with the path in the log), while a connection
// that opened it before goes on reading the image it pinned; a fixed
// commit serves again.
func TestSecretDamagedCommitKeepsOpenConnections(t *testing.T) {
	s := setupSecrets(t)
	sock := filepath.Join(s.dir, "d.sock")
	cfg := fmt.Sprintf("[[listen]]\naddress = \"unix:%s\"\n[export.keys]\nrepository = %q\nref = \"main\"\nsecret = true\ndecrypt = %q\nallow = [{ uid = [%d] }]\n",
		sock, s.keys, s.identity, os.Getuid())
	cfgPath := filepath.Join(s.dir, "d.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	logs := startServe(t, "--config", cfgPath)
	var built bytes.Buffer
	if err := Run(t.Context(), []string{"build", "-q", "--config", cfgPath, "--export", "keys"}, &built, io.Discard); err != nil {
		t.Fatal(err)
	}
	held := dialNBD(t, "unix", sock)
	if b, typ := held.replies(rawOptGo, infoRequest("keys")); typ != rawRepAck {
		t.Fatalf("GO keys: %q", b)
	}
	// Push a damaged key on top.
	bad := bytes.Clone(s.ctKey)
	bad[len(bad)-3] ^= 0x40
	os.WriteFile(filepath.Join(s.keys, "tls", "server.key.age"), bad, 0o644)
	sh(t, s.keys, nil, "git", "commit", "-q", "-am", "damaged")
	fresh := dialNBD(t, "unix", sock)
	if b, typ := fresh.replies(rawOptInfo, infoRequest("keys")); typ != rawRepErrUnknown {
		t.Errorf("INFO keys at the damaged commit: %q, want unknown", b)
	}
	waitLog(t, logs, "tls/server.key.age")
	if got, e := held.read(0, uint32(built.Len())); e != 0 || !bytes.Equal(got, built.Bytes()) {
		t.Errorf("the connection opened before the damage: errno %d, %d bytes equal %v", e, len(got), bytes.Equal(got, built.Bytes()))
	}
	// Fixed: served again.
	os.WriteFile(filepath.Join(s.keys, "tls", "server.key.age"), s.ctKey, 0o644)
	sh(t, s.keys, nil, "git", "commit", "-q", "-am", "fixed")
	again := dialNBD(t, "unix", sock)
	if b, typ := again.replies(rawOptGo, infoRequest("keys")); typ != rawRepAck {
		t.Fatalf("GO keys after the fix: %q", b)
	}
	if got, e := again.read(0, uint32(built.Len())); e != 0 || tarFile(t, got, "tls/server.key") == nil {
		t.Errorf("after the fix: errno %d", e)
	}
}
