package nbd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// slowResolver delays every resolution of "slow" by d, as building a big
// layout does, and records whether ctx was still alive when it returned.
func slowResolver(d time.Duration, ctxDead *atomic.Int64) func(*Server) {
	return func(s *Server) {
		resolve := s.Resolve
		s.Resolve = func(ctx context.Context, name string, peer Peer) (*Export, error) {
			if name == "slow" {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
				if ctx.Err() != nil {
					ctxDead.Add(1)
				}
				name = "small"
			}
			return resolve(ctx, name, peer)
		}
	}
}

// TestSlowResolve (issue 12): a resolver that takes longer than the
// handshake timeout does not cost the client its connection; the client
// is answered when it returns. Real clients, and a raw one that checks
// the timeout still ends a silent client.
func TestSlowResolve(t *testing.T) {
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	const timeout, delay = 300 * time.Millisecond, 1500 * time.Millisecond
	var ctxDead atomic.Int64
	ts := startServer(t, func(s *Server) {
		s.HandshakeTimeout = timeout
		slowResolver(delay, &ctxDead)(s)
	})
	start := time.Now()
	if size := nbdinfoSize(t, ts.unixURI("slow")); size != smallSize {
		t.Fatalf("nbdinfo: size %d", size)
	}
	if d := time.Since(start); d < delay {
		t.Fatalf("nbdinfo answered after %v: the resolver was not slow", d)
	}
	checkCopy(t, ts.tcpURI("slow"))

	// The same through the raw client: INFO waits, GO is answered at once
	// from the pin, and the handshake deadline still ends silence.
	rc := dialRaw(t, "unix", ts.sock)
	rc.greet(clientFlagFixedNewstyle | clientFlagNoZeroes)
	rc.sendOpt(optInfo, infoData("slow"))
	rc.infoReplies(optInfo)
	rc.sendOpt(optGo, infoData("slow"))
	rc.infoReplies(optGo)
	rc.readSmall(1)
	if n := ctxDead.Load(); n != 0 {
		t.Errorf("%d resolutions saw their context end", n)
	}

	silent := dialRaw(t, "unix", ts.sock)
	silent.read(handshakeLen)
	start = time.Now()
	silent.expectClosed()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a silent client was dropped after %v, with a handshake timeout of %v", d, timeout)
	}
}

// TestHandshakeSilenceSums: the handshake timeout bounds the client's
// silence summed over the handshake, not each wait alone: a client that
// pauses for less than the timeout before each option is still dropped
// once its pauses add up to it.
func TestHandshakeSilenceSums(t *testing.T) {
	const timeout, pause = 2 * time.Second, 800 * time.Millisecond
	ts := startServer(t, func(s *Server) { s.HandshakeTimeout = timeout })
	rc := dialRaw(t, "unix", ts.sock)
	rc.greet(clientFlagFixedNewstyle)
	for range 2 { // 1.6 s of pauses: within the budget
		time.Sleep(pause)
		rc.sendOpt(optInfo, infoData("small"))
		rc.infoReplies(optInfo)
	}
	time.Sleep(pause) // 2.4 s: past it
	rc.c.Write(be.AppendUint64(nil, magicIHAVEOPT))
	rc.expectClosed()
	waitLog(t, ts, "i/o timeout")
	checkFresh(t, ts)
}

// TestPeerCredOtherUser runs real clients as another uid and gid on the
// unix socket and checks the SO_PEERCRED the resolver saw, and that a
// resolver can refuse by it.
func TestPeerCredOtherUser(t *testing.T) {
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	setpriv := testutil.NeedTool(t, "setpriv", "util-linux")
	if os.Getuid() != 0 {
		t.Skip("running a client as another uid needs root (setpriv --reuid)")
	}
	var pl peerLog
	ts := startServer(t, recordPeers(&pl))
	// Let the other user reach the socket.
	if err := os.Chmod(filepath.Dir(ts.sock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ts.sock, 0o777); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 65534, 4242
	asOther := []string{"--reuid=65534", "--regid=4242", "--clear-groups"}

	cmd := osExec(setpriv, append(asOther, "nbdinfo", "--size", ts.unixURI("small"))...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("nbdinfo as uid %d: %v\n%s", uid, err, out.String())
	}
	ps := pl.get("small")
	if len(ps) != 1 || ps[0].Cred == nil {
		t.Fatalf("resolver saw %v", ps)
	}
	want := Cred{PID: int32(cmd.Process.Pid), UID: uid, GID: gid} // setpriv execs nbdinfo: same pid
	if got := *ps[0].Cred; got != want {
		t.Errorf("SO_PEERCRED %+v, want %+v", got, want)
	}

	// rootonly refuses every uid but 0.
	runFails(t, setpriv, append(asOther, "nbdinfo", "--size", ts.unixURI("rootonly"))...)
	if got := runTool(t, "nbdinfo", "--size", ts.unixURI("rootonly")); got != "4194304\n" {
		t.Errorf("nbdinfo as root: %q", got)
	}
	ps = pl.get("rootonly")
	if len(ps) != 2 || ps[0].Cred.UID != uid || ps[1].Cred.UID != 0 {
		t.Errorf("rootonly: resolver saw %v", ps)
	}
}
