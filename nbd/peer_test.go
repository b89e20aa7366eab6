package nbd

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// peerLog records the peers a resolver saw, by export name.
type peerLog struct {
	mu    sync.Mutex
	peers map[string][]Peer
}

func (pl *peerLog) add(name string, p Peer) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.peers == nil {
		pl.peers = map[string][]Peer{}
	}
	pl.peers[name] = append(pl.peers[name], p)
}

func (pl *peerLog) get(name string) []Peer {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return append([]Peer(nil), pl.peers[name]...)
}

// recordPeers makes the test server's resolver and lister record peers.
func recordPeers(pl *peerLog) func(*Server) {
	return func(s *Server) {
		resolve, list := s.Resolve, s.List
		s.Resolve = func(ctx context.Context, name string, peer Peer) (*Export, error) {
			pl.add(name, peer)
			switch name {
			case "policy":
				return nil, fmt.Errorf("test policy: %s: %w", peer, ErrPolicy)
			case "rootonly":
				if peer.Cred == nil || peer.Cred.UID != 0 {
					return nil, fmt.Errorf("test policy: %s: %w", peer, ErrPolicy)
				}
				name = "small"
			case "tlsonly":
				if peer.TLS == nil {
					return nil, fmt.Errorf("test policy: %w", ErrTLSRequired)
				}
				name = "small"
			case "alwaystls": // a resolver bug: asks for TLS even over TLS
				return nil, fmt.Errorf("test policy: %w", ErrTLSRequired)
			}
			return resolve(ctx, name, peer)
		}
		s.List = func(ctx context.Context, peer Peer) []string {
			pl.add("(list)", peer)
			return list(ctx, peer)
		}
	}
}

// TestPeer checks what the resolver and the lister learn about the peer:
// SO_PEERCRED on a unix socket, the address on TCP.
func TestPeer(t *testing.T) {
	var pl peerLog
	ts := startServer(t, recordPeers(&pl))

	rc := dialRaw(t, "unix", ts.sock)
	rc.greet(clientFlagFixedNewstyle)
	rc.sendOpt(optList, nil)
	for range testExportNames {
		rc.expectOpt(optList, repServer)
	}
	rc.expectOpt(optList, repAck)
	rc.sendOpt(optInfo, infoData("small"))
	rc.infoReplies(optInfo)
	for _, name := range []string{"(list)", "small"} {
		ps := pl.get(name)
		if len(ps) != 1 {
			t.Fatalf("%s: %d peers recorded", name, len(ps))
		}
		p := ps[0]
		want := Cred{PID: int32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
		if p.Network != "unix" || p.Cred == nil || *p.Cred != want || p.TLS != nil {
			t.Errorf("%s over unix: peer %+v (cred %+v), want cred %+v", name, p, p.Cred, want)
		}
	}

	tc := dialRaw(t, "tcp", ts.tcp)
	tc.open("plain", false, false)
	ps := pl.get("plain")
	if len(ps) != 1 {
		t.Fatalf("plain: %d peers recorded", len(ps))
	}
	p := ps[0]
	a, ok := p.Addr.(*net.TCPAddr)
	if p.Network != "tcp" || !ok || !a.IP.IsLoopback() || a.String() != tc.c.LocalAddr().String() || p.Cred != nil || p.TLS != nil {
		t.Errorf("over TCP: peer %+v, want the client's address %s", p, tc.c.LocalAddr())
	}
}

// TestResolverErrors checks how a resolver's refusals reach the client.
func TestResolverErrors(t *testing.T) {
	var pl peerLog
	ts := startServer(t, recordPeers(&pl))
	for _, tc := range []struct {
		name string
		opt  uint32
		want uint32
	}{
		{"policy", optInfo, repErrPolicy},
		{"policy", optGo, repErrPolicy},
		{"nope", optGo, repErrUnknown},
		// The listener has no TLS: the client cannot start it, so it is
		// never told to (doc/proto.md: no TLS_REQD in NOTLS mode).
		{"tlsonly", optGo, repErrPolicy},
	} {
		rc := dialRaw(t, "unix", ts.sock)
		rc.greet(clientFlagFixedNewstyle)
		rc.sendOpt(tc.opt, infoData(tc.name))
		if msg := rc.expectOpt(tc.opt, tc.want); !strings.Contains(string(msg), tc.name) {
			t.Errorf("%s: message %q does not name the export", tc.name, msg)
		}
		rc.sendOpt(optGo, infoData("small"))
		rc.infoReplies(optGo)
	}
	rc := dialRaw(t, "unix", ts.sock)
	rc.greet(clientFlagFixedNewstyle)
	rc.sendOpt(optExportName, []byte("policy"))
	rc.expectClosed()
	checkFresh(t, ts)
}

// obsEvent is one Observer call.
type obsEvent struct {
	kind, export, cmd string
	peer              Peer
	bytes             int64
	err               error
}

type testObserver struct {
	mu     sync.Mutex
	events []obsEvent
}

func (o *testObserver) add(e obsEvent) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}

func (o *testObserver) ConnOpened(p Peer) { o.add(obsEvent{kind: "opened", peer: p}) }
func (o *testObserver) ConnClosed(p Peer, export string) {
	o.add(obsEvent{kind: "closed", peer: p, export: export})
}
func (o *testObserver) ExportChosen(p Peer, export string) {
	o.add(obsEvent{kind: "chosen", peer: p, export: export})
}
func (o *testObserver) Request(export, cmd string, n int64, d time.Duration, err error) {
	if d < 0 {
		err = fmt.Errorf("negative duration %v", d)
	}
	o.add(obsEvent{kind: "request", export: export, cmd: cmd, bytes: n, err: err})
}

// waitFor polls the observer until it holds n events.
func (o *testObserver) waitFor(t *testing.T, n int) []obsEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		o.mu.Lock()
		ev := append([]obsEvent(nil), o.events...)
		o.mu.Unlock()
		if len(ev) >= n || time.Now().After(deadline) {
			return ev
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestObserver checks the Observer's calls for one connection: opened,
// export chosen, each request answered (with its bytes and errors), closed.
func TestObserver(t *testing.T) {
	obs := &testObserver{}
	ts := startServer(t, func(s *Server) { s.Observer = obs })
	rc := dialRaw(t, "unix", ts.sock)
	rc.open("bad", true, true)
	rc.sendReq(0, cmdRead, 1, 0, 4096, nil)
	rc.structuredRead(1, 0, 4096)
	rc.sendReq(0, cmdRead, 2, failFrom, 4096, nil)
	if _, errno, _ := rc.structuredRead(2, failFrom, 4096); errno != errIO {
		t.Fatalf("read of the broken range: error %d", errno)
	}
	rc.sendReq(0, cmdBlockStatus, 3, 0, 4096, nil)
	rc.readChunk()
	rc.sendReq(0, cmdWrite, 4, 0, 4, []byte("abcd"))
	rc.readChunk()
	rc.sendReq(0, cmdFlush, 5, 0, 0, nil)
	rc.readSimple()
	rc.sendReq(0, cmdDisc, 6, 0, 0, nil)
	rc.expectClosed()

	ev := obs.waitFor(t, 8)
	got := make([]string, len(ev))
	for i, e := range ev {
		got[i] = strings.Join(strings.Fields(fmt.Sprintf("%s %q %s %d %v", e.kind, e.export, e.cmd, e.bytes, e.err != nil)), " ")
		if e.kind != "request" && (e.peer.Network != "unix" || e.peer.Cred == nil) {
			t.Errorf("%s: peer %+v", e.kind, e.peer)
		}
	}
	// A worker observes after its reply is written: the next request's
	// event may come first, so the order is compared only for the ends.
	want := []string{
		`opened "" 0 false`,
		`chosen "bad" 0 false`,
		`request "bad" read 4096 false`,
		`request "bad" read 0 true`,
		`request "bad" block_status 0 false`,
		`request "bad" write 0 true`,
		`request "bad" flush 0 false`,
		`closed "bad" 0 false`,
	}
	if len(got) == len(want) {
		sort.Strings(got[2 : len(got)-1])
		sort.Strings(want[2 : len(want)-1])
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("observer events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	found := false
	for _, e := range ev {
		found = found || e.err != nil && e.cmd == "read" && strings.Contains(e.err.Error(), "object not found")
	}
	if !found {
		t.Errorf("no read event carries the image's error")
	}
}
