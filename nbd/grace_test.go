package nbd

import (
	"bufio"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestReadClientLateRead: a handshake read that comes after the deadline
// (the server ran late: a busy host) while the client's bytes are already
// in the socket succeeds, out of the grace budget; a silent client still
// times out; and the grace is bounded, so a client cannot stretch the
// handshake without end.
func TestReadClientLateRead(t *testing.T) {
	const timeout = 20 * time.Millisecond
	srv := &Server{HandshakeTimeout: timeout}
	pair := func() (net.Conn, net.Conn) {
		s, c := socketPair(t)
		t.Cleanup(func() { s.Close(); c.Close() })
		return s, c
	}
	newConn := func(c net.Conn) *conn {
		cn := &conn{srv: srv, raw: c, c: c, r: bufio.NewReader(c)}
		cn.hsLeft, cn.hsGrace = timeout, timeout
		return cn
	}

	// The client sent its bytes; the server reads them after its whole
	// budget went by.
	s, c := pair()
	cn := newConn(s)
	if _, err := c.Write([]byte("12345678")); err != nil {
		t.Fatal(err)
	}
	cn.hsLeft = 0
	b := make([]byte, 8)
	if err := cn.readClient(b); err != nil || string(b) != "12345678" {
		t.Fatalf("late read of waiting bytes: %q, %v", b, err)
	}
	if cn.hsGrace >= timeout {
		t.Errorf("grace left %v: the late read was not charged to it", cn.hsGrace)
	}

	// Half the bytes waiting, the rest never sent: the waiting half is
	// read, then the silence times out.
	s, c = pair()
	cn = newConn(s)
	if _, err := c.Write([]byte("1234")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := cn.readClient(b)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent client: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > timeout+readGrace+time.Second {
		t.Errorf("silent client held %v", d)
	}

	// No grace left: a late read fails even with bytes waiting.
	s, c = pair()
	cn = newConn(s)
	if _, err := c.Write([]byte("12345678")); err != nil {
		t.Fatal(err)
	}
	cn.hsLeft, cn.hsGrace = 0, 0
	if err := cn.readClient(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("late read without grace: %v, want a deadline error", err)
	}
}
