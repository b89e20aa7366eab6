//go:build linux

package nbd

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// unixPair returns the two ends of a real unix stream socket.
func unixPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	client, err = net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-done
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// awaitRequest returns whether or not a request comes, never reads what
// is waiting, leaves the server's spin slot free, and does not wait at
// all while another connection holds that slot, while the connection has
// requests on workers, or on a socket it cannot look at.
func TestAwaitRequest(t *testing.T) {
	srvEnd, cliEnd := unixPair(t)
	cn := &conn{srv: &Server{}, c: srvEnd, raw: srvEnd}
	cn.sock = cn.sysConn()
	if cn.sock == nil {
		t.Fatal("no raw socket for a plain unix connection")
	}
	// calls runs awaitRequest n times and returns the shortest call: a
	// call that waits takes requestSpin at least, and one that does not
	// far less unless the machine preempts it, which one call in n escapes.
	calls := func(n int) time.Duration {
		least := time.Hour
		for range n {
			start := time.Now()
			cn.awaitRequest()
			least = min(least, time.Since(start))
		}
		return least
	}
	if d := calls(20); d < requestSpin {
		t.Errorf("with nothing to read, awaitRequest took %v, want %v", d, requestSpin)
	}
	if cn.srv.spinning.Load() {
		t.Fatal("the spin slot is still held after awaitRequest")
	}

	// Refused waits: the slot is taken, requests are on workers, no socket.
	cn.srv.spinning.Store(true)
	refused := calls(50)
	cn.srv.spinning.Store(false)
	cn.onWorkers.Add(1)
	onWorkers := calls(50)
	cn.onWorkers.Add(-1)
	sock := cn.sock
	cn.sock = nil
	noSock := calls(50)
	cn.sock = sock
	for what, d := range map[string]time.Duration{"slot taken": refused, "requests on workers": onWorkers, "no socket": noSock} {
		if d >= requestSpin/2 {
			t.Errorf("%s: awaitRequest waited %v, want no wait", what, d)
		}
	}

	// A request waiting: no wait, and its bytes are still there to read.
	if _, err := cliEnd.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if d := calls(50); d >= requestSpin/2 {
		t.Errorf("with a request waiting, awaitRequest waited %v, want no wait", d)
	}
	buf := make([]byte, 16)
	srvEnd.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := srvEnd.Read(buf); err != nil || string(buf[:n]) != "request" {
		t.Errorf("after awaitRequest, read %q, %v; want the waiting bytes", buf[:n], err)
	}

	// A closed peer: the wait ends (the read then says EOF).
	cliEnd.Close()
	calls(5)
	if cn.srv.spinning.Load() {
		t.Error("the spin slot is held after waits on a closed peer")
	}
}
