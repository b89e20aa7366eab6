package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

var be = binary.BigEndian

// Connection ends. errHangup wraps every end the server chooses because
// the client broke a rule or tried to exhaust it; the others are soft.
var (
	errHangup  = errors.New("nbd: hard disconnect")
	errAbort   = errors.New("nbd: client sent NBD_OPT_ABORT")
	errDisc    = errors.New("nbd: client sent NBD_CMD_DISC")
	errStopped = errors.New("nbd: server stopping")
)

// Lingering close: after a hard disconnect the server half-closes and reads
// (and drops) what the client still sends for a moment, so the client can
// read the last reply instead of getting a reset.
const (
	lingerTimeout  = 500 * time.Millisecond
	lingerMaxBytes = 1 << 20
	readBufferSize = 32 << 10
	// writeStall: a client that takes no piece of a reply for this long is
	// dropped, which frees the buffers it holds for other connections.
	writeStall = 10 * time.Second
	// writePiece is how much of a reply one deadline covers.
	writePiece = 1 << 20
)

// pin is an export resolved by one connection: it serves the same image
// (and size) until the connection drops it.
type pin struct {
	name string // name the client used
	exp  *Export
	size int64
}

func (p *pin) canonicalName() string {
	if p.exp.Name != "" {
		return p.exp.Name
	}
	return p.name
}

// conn is one client connection.
type conn struct {
	srv   *Server
	raw   net.Conn      // the accepted connection: deadlines and hard closes
	c     net.Conn      // raw, or the *tls.Conn over it after STARTTLS
	r     *bufio.Reader // reads c
	held  []byte        // inline replies not yet written (see send); request reader only
	log   *slog.Logger
	start time.Time
	peer  Peer
	mode  TLSMode

	stopping atomic.Bool
	lim      *limiter
	cancel   context.CancelFunc // cancels the resolver's context on stop

	// Handshake state.
	hsLeft     time.Duration   // what is left of the time the handshake may wait on the client
	hsGrace    time.Duration   // what is left of the grace for late reads (see readClient)
	structured bool            // NBD_OPT_STRUCTURED_REPLY acknowledged
	noZeroes   bool            // client set NBD_FLAG_C_NO_ZEROES
	pins       map[string]*pin // by requested name
	pinOrder   []string        // names in pins, oldest first
	metaName   string          // export named by the last successful SET_META_CONTEXT
	metaAlloc  bool            // base:allocation selected for metaName
	optBuf     []byte

	// Transmission state, fixed once the handshake ends.
	cur         *pin
	blockStatus bool            // base:allocation negotiated for cur
	runs        runCache        // zero/data runs of cur
	sock        syscall.RawConn // raw socket for replies sent from files (see serveVecRead); nil: copy
	quickVec    atomic.Bool     // the last read sent from pieces was quick: answer big reads inline
	onWorkers   atomic.Int32    // requests being served by workers (see dispatch)

	wmu  sync.Mutex
	werr error
	work sync.WaitGroup

	requests atomic.Int64
	bytes    atomic.Int64
}

func newConn(s *Server, c net.Conn, mode TLSMode) *conn {
	return &conn{
		srv:   s,
		raw:   c,
		c:     c,
		peer:  peerOf(c),
		mode:  mode,
		r:     bufio.NewReaderSize(c, readBufferSize),
		log:   s.logger(),
		start: time.Now(),
		lim:   newLimiter(s.maxInFlight(), s.maxBufferBytes()),
		pins:  map[string]*pin{},
	}
}

// stop asks the connection to end: no new request is read, in-flight ones
// are answered. Safe to call from any goroutine, more than once.
func (cn *conn) stop() {
	cn.stopping.Store(true)
	cn.raw.SetReadDeadline(time.Now())
	cn.lim.close()
	if cn.cancel != nil {
		cn.cancel()
	}
}

// serve runs both phases, then logs one line and closes the connection.
func (cn *conn) serve(ctx context.Context) {
	var err error
	defer func() {
		// A panic in a resolver or an image must not take the server
		// down; the connection still waits for its workers and releases
		// its pins.
		if v := recover(); v != nil {
			cn.log.Error("nbd: panic serving a connection", "panic", v, "stack", string(debug.Stack()))
			cn.raw.Close()
			cn.lim.close()
			err = fmt.Errorf("%w: internal error", errHangup)
		}
		cn.work.Wait()
		if cn.stopping.Load() && !errors.Is(err, errDisc) && !errors.Is(err, errHangup) {
			err = errStopped
		}
		if errors.Is(err, errHangup) || errors.Is(err, errAbort) {
			cn.linger()
		}
		cn.c.Close()
		for _, p := range cn.pins {
			if p.exp.Release != nil {
				p.exp.Release()
			}
		}
		cn.logEnd(err)
		if o := cn.srv.Observer; o != nil {
			export := ""
			if cn.cur != nil {
				export = cn.cur.name
			}
			o.ConnClosed(cn.peer, export)
		}
	}()
	if o := cn.srv.Observer; o != nil {
		o.ConnOpened(cn.peer)
	}
	err = cn.handshake(ctx)
	if err == nil {
		err = cn.transmit()
	}
}

func (cn *conn) linger() {
	if cw, ok := cn.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	cn.raw.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, cn.r, lingerMaxBytes)
}

// peerName names the other end of c for logs.
func peerName(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil {
		return a.Network() + ":" + a.String()
	}
	return "unknown"
}

func (cn *conn) logEnd(err error) {
	attrs := []any{
		"peer", cn.peer.String(),
		"requests", cn.requests.Load(),
		"bytes", cn.bytes.Load(),
		"duration", time.Since(cn.start).Round(time.Microsecond),
	}
	if cs := cn.peer.TLS; cs != nil {
		attrs = append(attrs, "tls", tls.VersionName(cs.Version))
		if len(cs.PeerCertificates) > 0 {
			attrs = append(attrs, "tls_client", cs.PeerCertificates[0].Subject.String())
		}
	}
	if cn.cur != nil {
		attrs = append(attrs, "export", cn.cur.name, "description", cn.cur.exp.Description)
		attrs = append(attrs, cn.cur.exp.LogAttrs...)
	}
	level := slog.LevelInfo
	switch {
	case err == nil || errors.Is(err, errDisc) || errors.Is(err, errAbort):
		attrs = append(attrs, "end", "client disconnect")
	case errors.Is(err, errStopped):
		attrs = append(attrs, "end", "server shutdown")
	default:
		if errors.Is(err, errHangup) {
			level = slog.LevelWarn
		}
		attrs = append(attrs, "end", err.Error())
	}
	cn.log.Log(context.Background(), level, "nbd connection closed", attrs...)
}

// validString reports whether b is a protocol string: UTF-8, no NUL, at
// most 4096 bytes.
func validString(b []byte) bool {
	if len(b) > maxStringLen || !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c == 0 {
			return false
		}
	}
	return true
}

// truncateString cuts s to at most n bytes on a rune boundary.
func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// resolve returns the connection's pin for name, asking the resolver the
// first time.
func (cn *conn) resolve(ctx context.Context, name string) (*pin, error) {
	if p, ok := cn.pins[name]; ok {
		return p, nil
	}
	if cn.srv.Resolve == nil {
		return nil, ErrUnknownExport
	}
	exp, err := cn.srv.Resolve(ctx, name, cn.peer)
	if err != nil {
		return nil, err
	}
	if exp == nil || exp.Image == nil {
		if exp != nil && exp.Release != nil {
			exp.Release()
		}
		return nil, fmt.Errorf("nbd: resolver returned no image for %q", name)
	}
	size := exp.Image.Size()
	if size < 0 {
		if exp.Release != nil {
			exp.Release()
		}
		return nil, fmt.Errorf("nbd: export %q has negative size %d", name, size)
	}
	p := &pin{name: name, exp: exp, size: size}
	cn.pins[name] = p
	cn.pinOrder = append(cn.pinOrder, name)
	cn.dropOldPins()
	return p, nil
}

// maxPins bounds the exports one connection holds before choosing one: each
// pin keeps an image (and its layout) alive, and a client asking INFO for
// hundreds of names must not make the server hold hundreds of layouts.
const maxPins = 8

// dropOldPins releases the oldest pins beyond maxPins (never the current
// export). A later GO for a dropped name resolves it again.
func (cn *conn) dropOldPins() {
	for len(cn.pinOrder) > maxPins {
		name := cn.pinOrder[0]
		cn.pinOrder = cn.pinOrder[1:]
		p := cn.pins[name]
		if p == nil || p == cn.cur {
			continue
		}
		delete(cn.pins, name)
		if p.exp.Release != nil {
			p.exp.Release()
		}
	}
}

// transmissionFlags are the flags of every export: read-only, immutable
// (so multi-conn safe), flush and cache accepted as no-ops.
func (cn *conn) transmissionFlags() uint16 {
	f := tflagHasFlags | tflagReadOnly | tflagSendFlush | tflagSendCache | tflagCanMultiConn
	if cn.structured {
		f |= tflagSendDF
	}
	return f
}

// limiter bounds a connection's in-flight requests and the buffer bytes
// they hold. Only the request reader acquires; workers release.
type limiter struct {
	mu       sync.Mutex
	cond     sync.Cond
	n, maxN  int
	used     int64
	maxBytes int64
	closed   bool
}

func newLimiter(maxN int, maxBytes int64) *limiter {
	l := &limiter{maxN: maxN, maxBytes: maxBytes}
	l.cond.L = &l.mu
	return l
}

// acquire waits for a slot and cost bytes; false once the limiter is closed.
func (l *limiter) acquire(cost int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.closed && (l.n >= l.maxN || l.used+cost > l.maxBytes) {
		l.cond.Wait()
	}
	if l.closed {
		return false
	}
	l.n++
	l.used += cost
	return true
}

func (l *limiter) release(cost int64) {
	l.mu.Lock()
	l.n--
	l.used -= cost
	l.mu.Unlock()
	l.cond.Broadcast()
}

func (l *limiter) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cond.Broadcast()
}
