package nbd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
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

// ErrUnknownExport is returned by a resolver for a name it does not serve.
var ErrUnknownExport = errors.New("nbd: unknown export")

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
	// Resolve maps an export name to an export. It is called once per name
	// per connection (the result is pinned for that connection). It
	// returns ErrUnknownExport (possibly wrapped) for names it does not serve.
	Resolve func(ctx context.Context, name string) (*Export, error)
	// List returns the export names for NBD_OPT_LIST (nil: an empty list).
	List func() []string
	// Logger receives one line per connection and read errors (nil: slog.Default()).
	Logger *slog.Logger

	HandshakeTimeout time.Duration // whole handshake deadline
	MaxInFlight      int           // concurrent requests per connection
	MaxOptions       int           // options per connection before a hard disconnect
	MaxOptionLength  int           // option data bytes before a hard disconnect
	MaxBufferBytes   int64         // read buffer bytes in use per connection (at least one max read)
	// MaxTotalBufferBytes bounds read buffer bytes across connections (at
	// least MaxBufferBytes).
	MaxTotalBufferBytes int64
	MaxConns            int // open connections; more are closed at once

	mu        sync.Mutex
	global    *limiter // buffer bytes across connections
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

// Serve accepts connections on l and serves each in its own goroutine. It
// returns nil once ctx is done or Shutdown is called, after the listener is
// closed and its connections have finished their in-flight requests and
// closed; otherwise it returns the accept error.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
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
			s.ServeConn(ctx, c)
		}()
	}
}

// isTemporary reports an accept error worth retrying (EMFILE, ECONNABORTED
// and the like), as net/http does.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// ServeConn runs the handshake and transmission phases on c and closes it.
// It returns when the client disconnects, a protocol violation ends the
// connection, or ctx is done or Shutdown is called (in-flight requests are
// answered first).
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	cn := newConn(s, c)
	s.mu.Lock()
	s.init()
	if s.shutdown {
		s.mu.Unlock()
		c.Close()
		return
	}
	if len(s.conns) >= s.maxConns() {
		s.mu.Unlock()
		c.Close()
		s.logger().Warn("nbd: too many connections: closed a new one", "peer", peerName(c), "max", s.maxConns())
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
			cn.c.Close()
		}
		s.mu.Unlock()
		<-finished
		return fmt.Errorf("nbd: shutdown: %w", ctx.Err())
	}
}
