package notify

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen opens a unixgram socket as systemd does for $NOTIFY_SOCKET.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	return string(buf[:n])
}

func TestReadyOnSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	c := listen(t, path)
	t.Setenv(Socket, path)

	sent, err := Ready("serving main at 1a2b3c\nsecond line")
	if err != nil || !sent {
		t.Fatalf("Ready: %v, %v", sent, err)
	}
	if got, want := recv(t, c), "READY=1\nSTATUS=serving main at 1a2b3c second line"; got != want {
		t.Errorf("datagram %q, want %q", got, want)
	}
	if _, err := Status("3 connections"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "STATUS=3 connections" {
		t.Errorf("datagram %q", got)
	}
	if _, err := Reloading(); err != nil {
		t.Fatal(err)
	}
	var usec int64
	if got := recv(t, c); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("datagram %q", got)
	} else if _, err := fmt.Sscanf(got, "RELOADING=1\nMONOTONIC_USEC=%d", &usec); err != nil || usec <= 0 {
		t.Errorf("datagram %q: MONOTONIC_USEC %d, %v", got, usec, err)
	}
	if _, err := Stopping(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "STOPPING=1" {
		t.Errorf("datagram %q", got)
	}
}

func TestAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@gitblk-notify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c := listen(t, name)
	t.Setenv(Socket, name)
	if sent, err := Ready(""); err != nil || !sent {
		t.Fatalf("Ready: %v, %v", sent, err)
	}
	if got := recv(t, c); got != "READY=1" {
		t.Errorf("datagram %q", got)
	}
}

func TestNoSocket(t *testing.T) {
	t.Setenv(Socket, "")
	if sent, err := Ready("x"); sent || err != nil {
		t.Errorf("without %s: %v, %v", Socket, sent, err)
	}
	// Named but nobody listening: an error, not a hang.
	t.Setenv(Socket, filepath.Join(t.TempDir(), "absent.sock"))
	if sent, err := Ready(""); sent || err == nil {
		t.Errorf("to a missing socket: %v, %v", sent, err)
	}
	t.Setenv(Socket, "vsock:2:1234")
	if _, err := Ready(""); err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Errorf("vsock: %v", err)
	}
}

// TestSystemdUnits checks the units in contrib/systemd with
// systemd-analyze verify, ExecStart pointing at a binary that exists (this
// test's own), and that they wait for READY=1.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	units, err := filepath.Glob("../contrib/systemd/*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units: %v", err)
	}
	dir := t.TempDir()
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("\nType=notify\n")) {
			t.Errorf("%s: not Type=notify", u)
		}
		if !bytes.Contains(b, []byte("ExecStart=/usr/local/bin/gitblk ")) {
			t.Fatalf("%s: ExecStart does not run /usr/local/bin/gitblk", u)
		}
		b = bytes.ReplaceAll(b, []byte("/usr/local/bin/gitblk"), []byte(self))
		base := filepath.Base(u)
		if err := os.WriteFile(filepath.Join(dir, base), b, 0o644); err != nil {
			t.Fatal(err)
		}
		// A template is verified as an instance of it.
		inst := strings.Replace(base, "@.", "@site.", 1)
		cmd := exec.Command(analyze, "verify", "--man=no", inst)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		// verify only warns about many mistakes (an unknown Type=, a bad
		// directive): any output fails too.
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", base, err, out)
		}
	}
}
