package nbd

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// TLS with clients nobody here wrote: libnbd's nbdinfo and nbdcopy
// (nbds:// and nbds+unix:// with tls-certificates=DIR), qemu-img with
// tls-creds-x509, and nbd-client -l, against a listener that requires TLS.

func (ts *testServer) tlsTCPURI(name, dir string) string {
	return "nbds://" + ts.tcp + "/" + name + "?tls-certificates=" + dir
}

func (ts *testServer) tlsUnixURI(name, dir string) string {
	return "nbds+unix:///" + name + "?socket=" + ts.sock + "&tls-certificates=" + dir
}

// runFails runs a client that must fail and returns its output.
func runFails(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("%s %s succeeded:\n%s", name, strings.Join(args, " "), out)
	}
	return string(out)
}

// checkCopy copies uri with nbdcopy and compares it with the small image.
func checkCopy(t *testing.T, uri string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "copy.img")
	runTool(t, "nbdcopy", uri, out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, smallImage().data) {
		t.Errorf("nbdcopy %s: the copy differs from the image (%d bytes, want %d)", uri, len(got), smallSize)
	}
}

// nbdinfoSize runs nbdinfo --json on uri and returns the export's size.
func nbdinfoSize(t *testing.T, uri string) int64 {
	t.Helper()
	var info struct {
		Exports []struct {
			Size int64 `json:"export-size"`
		} `json:"exports"`
	}
	out := runTool(t, "nbdinfo", "--json", uri)
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.Exports) != 1 {
		t.Fatalf("nbdinfo --json %s: %v\n%s", uri, err, out)
	}
	return info.Exports[0].Size
}

// qemuConvert copies an export with qemu-img over TLS and compares it with
// the small image. server is the nbd driver's server.* options.
func qemuConvert(t *testing.T, dir, server, export string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "qemu.img")
	runTool(t, "qemu-img", "convert",
		"--object", "tls-creds-x509,id=tls0,dir="+dir+",endpoint=client",
		"--image-opts", "driver=nbd,"+server+",export="+export+",tls-creds=tls0",
		"-O", "raw", out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, smallImage().data) {
		t.Errorf("qemu-img convert over TLS (%s): the copy differs from the image (%d bytes, first difference at %d)", server, len(got), firstDiff(got, smallImage().data))
	}
}

func TestTLSClients(t *testing.T) {
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	testutil.NeedTool(t, "qemu-img", "qemu-utils")
	testutil.NeedTool(t, "nbd-client", "nbd-client")
	certs := makeCerts(t)
	var pl peerLog
	ts := startServerMode(t, TLSRequire, func(s *Server) {
		s.TLSConfig = certs.server
		recordPeers(&pl)(s)
	})
	_, port, _ := strings.Cut(ts.tcp, ":")

	t.Run("nbdinfo", func(t *testing.T) {
		for _, uri := range []string{ts.tlsTCPURI("small", certs.dir), ts.tlsUnixURI("small", certs.dir)} {
			if size := nbdinfoSize(t, uri); size != smallSize {
				t.Errorf("nbdinfo %s: size %d", uri, size)
			}
		}
		ps := pl.get("small")
		if len(ps) < 2 {
			t.Fatalf("%d resolutions of small", len(ps))
		}
		for _, p := range ps {
			checkTLSPeer(t, p, certs, 0)
		}
		if last := ps[len(ps)-1]; last.Network != "unix" || last.Cred == nil || last.Cred.UID != uint32(os.Getuid()) {
			t.Errorf("over nbds+unix: peer %s, want unix credentials too", last)
		}
		out := runTool(t, "nbdinfo", "--list", ts.tlsTCPURI("", certs.dir))
		for _, name := range []string{"small", "plain", "big"} {
			if !strings.Contains(out, "export=\""+name+"\"") && !strings.Contains(out, "export: "+name) && !strings.Contains(out, name) {
				t.Errorf("nbdinfo --list over TLS does not name %q:\n%s", name, out)
			}
		}
	})
	t.Run("nbdcopy", func(t *testing.T) {
		checkCopy(t, ts.tlsTCPURI("small", certs.dir))
		checkCopy(t, ts.tlsUnixURI("small", certs.dir))
	})
	t.Run("qemu-img", func(t *testing.T) {
		qemuConvert(t, certs.dir, "server.type=inet,server.host=127.0.0.1,server.port="+port, "small")
		qemuConvert(t, certs.dir, "server.type=unix,server.path="+ts.sock+",tls-hostname=localhost", "small")
	})
	t.Run("nbd-client -l", func(t *testing.T) {
		n := len(pl.get("(list)"))
		out := runTool(t, "nbd-client", "-l", "127.0.0.1", port,
			"-certfile", filepath.Join(certs.dir, "client-cert.pem"),
			"-keyfile", filepath.Join(certs.dir, "client-key.pem"),
			"-cacertfile", filepath.Join(certs.dir, "ca-cert.pem"),
			"-tlshostname", "localhost")
		for _, name := range []string{"small", "plain", "big", "gate"} {
			if !strings.Contains(out, name) {
				t.Errorf("nbd-client -l does not list %q:\n%s", name, out)
			}
		}
		ps := pl.get("(list)")[n:]
		if len(ps) != 1 {
			t.Fatalf("nbd-client -l: List called %d times", len(ps))
		}
		// nbd-client speaks TLS 1.2 only.
		checkTLSPeer(t, ps[0], certs, tls.VersionTLS12)
	})
	t.Run("refused", func(t *testing.T) {
		for _, c := range []struct{ what, uri, log string }{
			{"another CA", ts.tlsTCPURI("small", certs.otherDir), "TLS handshake: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
			{"no certificate", ts.tlsUnixURI("small", certs.noneDir), "TLS handshake: tls: client didn't provide a certificate"},
			{"no TLS", ts.tcpURI("small"), ""},
			{"no TLS, unix", ts.unixURI("small"), ""},
		} {
			before := len(pl.get("small"))
			out := runFails(t, "nbdinfo", c.uri)
			if len(pl.get("small")) != before {
				t.Errorf("%s: the resolver was asked", c.what)
			}
			if c.log != "" {
				waitLog(t, ts, c.log)
			}
			t.Logf("%s: nbdinfo: %s", c.what, strings.TrimSpace(out))
			if size := nbdinfoSize(t, ts.tlsUnixURI("", certs.dir)); size != smallSize {
				t.Fatalf("fresh client after %s: size %d", c.what, size)
			}
		}
		out := runFails(t, "nbd-client", "-l", "127.0.0.1", port,
			"-certfile", filepath.Join(certs.otherDir, "client-cert.pem"),
			"-keyfile", filepath.Join(certs.otherDir, "client-key.pem"),
			"-cacertfile", filepath.Join(certs.dir, "ca-cert.pem"),
			"-tlshostname", "localhost")
		t.Logf("nbd-client -l with a certificate from another CA: %s", strings.TrimSpace(out))
		checkFreshTLS(t, ts, certs)
	})
}

// TestTLS12Clients: with the server held to TLS 1.2, libnbd and qemu still
// read every byte (doc/proto.md: TLS 1.2 is a MUST).
func TestTLS12Clients(t *testing.T) {
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	testutil.NeedTool(t, "qemu-img", "qemu-utils")
	certs := makeCerts(t)
	var pl peerLog
	cfg := certs.server.Clone()
	cfg.MaxVersion = tls.VersionTLS12
	ts := startServerMode(t, TLSRequire, func(s *Server) {
		s.TLSConfig = cfg
		recordPeers(&pl)(s)
	})
	_, port, _ := strings.Cut(ts.tcp, ":")
	checkCopy(t, ts.tlsTCPURI("small", certs.dir))
	qemuConvert(t, certs.dir, "server.type=inet,server.host=127.0.0.1,server.port="+port, "small")
	ps := pl.get("small")
	if len(ps) == 0 {
		t.Fatal("no resolution")
	}
	for _, p := range ps {
		checkTLSPeer(t, p, certs, tls.VersionTLS12)
	}
}
