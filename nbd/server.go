package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Image is what an export serves: a size and concurrent random reads.
// ReadAt must be safe for concurrent use.
type Image interface {
	Size() int64
	ReadAt(p []byte, off int64) (int, error)
}

// ExtentImage is an Image that knows its zero runs (imager.Layout is one):
// ExtentAt returns the length of the run starting at off and whether it
// reads as zeros. The server uses it, when present, for NBD_CMD_BLOCK_STATUS
// (zero runs are HOLE|ZERO) and for hole chunks in large structured reads.
type ExtentImage interface {
	Image
	ExtentAt(off int64) (n int64, zero bool)
}

// Export is one resolved export: what a connection pins for a name.
type Export struct {
	Name        string // canonical name, sent as NBD_INFO_NAME
	Description string // human-readable, sent as NBD_INFO_DESCRIPTION (e.g. the commit)
	Image       Image
	Release     func() // optional: called once when the connection drops this export
	LogAttrs    []any  // optional: slog key-value pairs added to the connection's log line (e.g. the commit)
}

// Errors a resolver returns (possibly wrapped); the server maps them to
// option replies (doc/proto.md "Option reply types"). Any other error is
// answered like an unknown export, with the details in the log only.
var (
	// ErrUnknownExport: a name the resolver does not serve
	// (NBD_REP_ERR_UNKNOWN; NBD_OPT_EXPORT_NAME closes the connection).
	ErrUnknownExport = errors.New("nbd: unknown export")
	// ErrPolicy: the export exists but this peer is refused
	// (NBD_REP_ERR_POLICY). A resolver that must not reveal a name
	// returns ErrUnknownExport instead.
	ErrPolicy = errors.New("nbd: refused by policy")
	// ErrTLSRequired: the export needs TLS and the peer has not started it
	// (NBD_REP_ERR_TLS_REQD before STARTTLS on a TLSOn listener; after TLS,
	// or on a TLSOff listener, where the client cannot start TLS, it is
	// answered NBD_REP_ERR_POLICY).
	ErrTLSRequired = errors.New("nbd: export requires TLS")
)

// TLSMode says how a listener treats NBD_OPT_STARTTLS (doc/proto.md "TLS
// support").
type TLSMode int

const (
	// TLSOff: STARTTLS gets NBD_REP_ERR_POLICY (NOTLS mode).
	TLSOff TLSMode = iota
	// TLSOn: STARTTLS is allowed and options work before it; a resolver
	// may still require TLS per export with ErrTLSRequired (SELECTIVETLS).
	TLSOn
	// TLSRequire: before STARTTLS every option but STARTTLS and ABORT gets
	// NBD_REP_ERR_TLS_REQD, and NBD_OPT_EXPORT_NAME closes the connection
	// (FORCEDTLS).
	TLSRequire
)

func (m TLSMode) String() string {
	switch m {
	case TLSOff:
		return "off"
	case TLSOn:
		return "on"
	case TLSRequire:
		return "require"
	}
	return fmt.Sprintf("TLSMode(%d)", int(m))
}

// Defaults for the Server's zero-valued limits.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxInFlight      = 16
	DefaultMaxOptions       = 256      // nbdinfo --list spends about 3 options per export
	DefaultMaxOptionLength  = 64 << 10 // names are at most 4 KiB; meta queries add little
	DefaultMaxBufferBytes   = 2*maxPayload + 2*maxReplyHeaderRoom
	// DefaultMaxTotalBufferBytes bounds read buffers across all
	// connections, so many greedy clients cannot exhaust memory: they
	// wait for each other (a client that takes no piece of a reply for
	// writeStall is dropped, which frees what it held).
	DefaultMaxTotalBufferBytes = 4 * DefaultMaxBufferBytes
	// DefaultMaxConns bounds open connections; more are closed at once.
	DefaultMaxConns = 512
)

// Server serves exports over NBD. Set the fields before the first Serve or
// ServeConn; they are read without locking afterwards.
type Server struct {
	// Resolve maps an export name, asked for by peer, to an export. It is
	// called once per name per connection (the result is pinned for that
	// connection; STARTTLS forgets the pins, so a name is resolved again
	// with the TLS peer). It returns ErrUnknownExport, ErrPolicy or
	// ErrTLSRequired (possibly wrapped) to refuse. Its time does not count
	// against HandshakeTimeout: the client waits for it, however long it
	// takes, and ctx ends only when the connection is stopped.
	Resolve func(ctx context.Context, name string, peer Peer) (*Export, error)
	// List returns the export names for NBD_OPT_LIST as peer may see them
	// (nil: an empty list). It may leave out names peer must not learn.
	List func(ctx context.Context, peer Peer) []string
	// TLSConfig is the server side of NBD_OPT_STARTTLS (nil: no TLS; then
	// ServeMode with TLSOn or TLSRequire fails). Client certificates are
	// checked as it says (ClientAuth, ClientCAs); certificates are reloaded
	// by the caller through GetConfigForClient or GetCertificate.
	TLSConfig *tls.Config
	// Observer, when set, is told about connections and requests.
	Observer Observer
	// Logger receives one line per connection and read errors (nil: slog.Default()).
	Logger *slog.Logger

	// HandshakeTimeout bounds the time the handshake waits on the client
	// (reads, writes, the TLS handshake), summed over the handshake; time
	// the server spends in Resolve or List does not count.
	HandshakeTimeout time.Duration
	MaxInFlight      int   // concurrent requests per connection
	MaxOptions       int   // options per connection before a hard disconnect
	MaxOptionLength  int   // option data bytes before a hard disconnect
	MaxBufferBytes   int64 // read buffer bytes in use per connection (at least one max read)
	// MaxTotalBufferBytes bounds read buffer bytes across connections (at
	// least MaxBufferBytes).
	MaxTotalBufferBytes int64
	MaxConns            int // open connections; more are closed at once

	mu        sync.Mutex
	global    *limiter    // buffer bytes across connections
	spinning  atomic.Bool // a connection is waiting briefly for its next request (spin_linux.go)
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	shutdown  bool
	done      chan struct{} // closed by Shutdown
	connWG    sync.WaitGroup
}

func (s *Server) init() {
	if s.done == nil {
		s.done = make(chan struct{})
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		total := max(s.MaxTotalBufferBytes, s.maxBufferBytes())
		if s.MaxTotalBufferBytes <= 0 {
			total = max(DefaultMaxTotalBufferBytes, s.maxBufferBytes())
		}
		s.global = newLimiter(math.MaxInt, total)
	}
}

func (s *Server) maxConns() int { return orDefault(s.MaxConns, DefaultMaxConns) }

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// orDefault is v when set (positive), else d.
func orDefault[T int | int64 | time.Duration](v, d T) T {
	if v > 0 {
		return v
	}
	return d
}

func (s *Server) handshakeTimeout() time.Duration {
	return orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout)
}
func (s *Server) maxInFlight() int     { return orDefault(s.MaxInFlight, DefaultMaxInFlight) }
func (s *Server) maxOptions() int      { return orDefault(s.MaxOptions, DefaultMaxOptions) }
func (s *Server) maxOptionLength() int { return orDefault(s.MaxOptionLength, DefaultMaxOptionLength) }

func (s *Server) maxBufferBytes() int64 {
	if s.MaxBufferBytes >= maxPayload+maxReplyHeaderRoom {
		return s.MaxBufferBytes
	}
	if s.MaxBufferBytes > 0 {
		return maxPayload + maxReplyHeaderRoom
	}
	return DefaultMaxBufferBytes
}

// defaultMode is the TLS mode of Serve and ServeConn: TLSOn when a
// TLSConfig is set, else TLSOff.
func (s *Server) defaultMode() TLSMode {
	if s.TLSConfig != nil {
		return TLSOn
	}
	return TLSOff
}

func (s *Server) checkMode(mode TLSMode) error {
	switch mode {
	case TLSOff:
		return nil
	case TLSOn, TLSRequire:
		if s.TLSConfig == nil {
			return fmt.Errorf("nbd: TLS mode %s without a TLSConfig", mode)
		}
		return nil
	}
	return fmt.Errorf("nbd: unknown TLS mode %d", int(mode))
}

// Serve is ServeMode with TLSOn when TLSConfig is set, else TLSOff.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return s.ServeMode(ctx, l, s.defaultMode())
}

// ServeMode accepts connections on l and serves each in its own goroutine
// with the given TLS mode. It returns nil once ctx is done or Shutdown is
// called, after the listener is closed and its connections have finished
// their in-flight requests and closed; otherwise it returns the accept
// error, or at once an error for a TLS mode without a TLSConfig.
func (s *Server) ServeMode(ctx context.Context, l net.Listener, mode TLSMode) error {
	if err := s.checkMode(mode); err != nil {
		l.Close()
		return err
	}
	s.mu.Lock()
	s.init()
	if s.shutdown {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	done := s.done
	s.mu.Unlock()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-done:
				return nil
			default:
			}
			if ctx.Err() != nil {
				return nil
			}
			if isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("nbd: accept", "err", err, "retry", delay)
				select {
				case <-time.After(delay):
					continue
				case <-ctx.Done():
					return nil
				case <-done:
					return nil
				}
			}
			return fmt.Errorf("nbd: accept on %s: %w", l.Addr(), err)
		}
		delay = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c, mode)
		}()
	}
}

// isTemporary reports an accept error worth retrying (EMFILE, ECONNABORTED
// and the like), as net/http does.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// ServeConn is ServeConnMode with TLSOn when TLSConfig is set, else TLSOff.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	s.serveConn(ctx, c, s.defaultMode())
}

// ServeConnMode runs the handshake and transmission phases on c with the
// given TLS mode and closes it. It returns when the client disconnects, a
// protocol violation ends the connection, or ctx is done or Shutdown is
// called (in-flight requests are answered first). A TLS mode without a
// TLSConfig closes c at once, with a log line.
func (s *Server) ServeConnMode(ctx context.Context, c net.Conn, mode TLSMode) {
	if err := s.checkMode(mode); err != nil {
		c.Close()
		s.logger().Error("nbd: serving a connection", "err", err)
		return
	}
	s.serveConn(ctx, c, mode)
}

func (s *Server) serveConn(ctx context.Context, c net.Conn, mode TLSMode) {
	cn := newConn(s, c, mode)
	s.mu.Lock()
	s.init()
	if s.shutdown {
		s.mu.Unlock()
		c.Close()
		return
	}
	if len(s.conns) >= s.maxConns() {
		s.mu.Unlock()
		// Log first: whoever sees the close can already read why.
		s.logger().Warn("nbd: too many connections: closed a new one", "peer", peerName(c), "max", s.maxConns())
		c.Close()
		return
	}
	s.conns[cn] = struct{}{}
	s.connWG.Add(1)
	done := s.done
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, cn)
		s.mu.Unlock()
		s.connWG.Done()
	}()

	ctx, cancel := context.WithCancel(ctx)
	cn.cancel = cancel
	defer cancel()
	stopCtx := context.AfterFunc(ctx, cn.stop)
	defer stopCtx()
	stopDone := make(chan struct{})
	defer close(stopDone)
	go func() {
		select {
		case <-done:
			cn.stop()
		case <-stopDone:
		}
	}()
	cn.serve(ctx)
}

// Shutdown stops every listener, asks every connection to stop reading
// requests, and waits until they have answered what is in flight and
// closed. If ctx ends first, the remaining connections are closed at once
// and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.init()
	if !s.shutdown {
		s.shutdown = true
		close(s.done)
	}
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()

	finished := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for cn := range s.conns {
			cn.raw.Close()
		}
		s.mu.Unlock()
		<-finished
		return fmt.Errorf("nbd: shutdown: %w", ctx.Err())
	}
}
