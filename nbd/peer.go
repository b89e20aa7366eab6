package nbd

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// Peer is who is on the other end of a connection, as the transport
// established it. nbd only establishes it; what a peer may read is the
// resolver's decision.
type Peer struct {
	Network string   // "tcp" or "unix" (or the conn's address network for other conns)
	Addr    net.Addr // remote address (TCP: *net.TCPAddr); may be nil
	// Cred is the unix socket peer's SO_PEERCRED (socket(7)): the process
	// that called connect(2), fixed then, so a client cannot forge it.
	// nil on TCP or when unavailable.
	Cred *Cred
	// TLS is non-nil once NBD_OPT_STARTTLS succeeded; its PeerCertificates
	// have been verified as the Server's tls.Config asks.
	TLS *tls.ConnectionState
}

// Cred is a unix socket peer's process, user and group ids.
type Cred struct {
	PID      int32
	UID, GID uint32
}

// String names the peer for logs: network, address, and uid/gid when known.
func (p Peer) String() string {
	s := p.Network + ":"
	if p.Addr != nil {
		s += p.Addr.String()
	}
	if p.Cred != nil {
		s += fmt.Sprintf(" pid=%d uid=%d gid=%d", p.Cred.PID, p.Cred.UID, p.Cred.GID)
	}
	return s
}

// peerOf establishes the transport's view of c.
func peerOf(c net.Conn) Peer {
	p := Peer{Addr: c.RemoteAddr()}
	switch c := c.(type) {
	case *net.TCPConn:
		p.Network = "tcp"
	case *net.UnixConn:
		p.Network = "unix"
		p.Cred = unixCred(c)
	default:
		if a := c.LocalAddr(); a != nil {
			p.Network = a.Network()
		}
	}
	return p
}

// Observer receives events for metrics. Its methods are called on the
// connection's goroutines, synchronously: they must be cheap, never block,
// and be safe for concurrent use.
type Observer interface {
	// ConnOpened is called once a connection is accepted (past MaxConns).
	ConnOpened(peer Peer)
	// ConnClosed is called once per opened connection, after it closed;
	// export is the chosen export's name, "" if none was chosen.
	ConnClosed(peer Peer, export string)
	// ExportChosen is called when NBD_OPT_GO or NBD_OPT_EXPORT_NAME succeeded.
	ExportChosen(peer Peer, export string)
	// Request is called after each request is answered: cmd is "read",
	// "block_status", "flush", "cache", "write", "trim", "write_zeroes" or
	// "unknown"; bytes the data bytes a read returned; d the time from
	// the request header to the end of its reply; err non-nil when the
	// reply was an error (or could not be sent).
	Request(export string, cmd string, bytes int64, d time.Duration, err error)
}
