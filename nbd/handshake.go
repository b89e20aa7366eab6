package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// clientIO runs one read or write of the handshake with a deadline of what
// is left of the time the handshake may wait on the client, and charges it
// the time the operation took. So HandshakeTimeout bounds the client's
// silence, summed over the handshake, and never the server's own work
// (Resolve and List run between these operations, under no deadline).
func (cn *conn) clientIO(f func() error) error {
	if cn.hsLeft <= 0 {
		return fmt.Errorf("nbd: the client used up the handshake timeout of %v: %w", cn.srv.handshakeTimeout(), os.ErrDeadlineExceeded)
	}
	start := time.Now()
	if err := cn.raw.SetDeadline(start.Add(cn.hsLeft)); err != nil {
		return fmt.Errorf("nbd: setting handshake deadline: %w", err)
	}
	// stop sets stopping before it moves the read deadline: checked after
	// our deadline is set, one of the two always ends the operation.
	if cn.stopping.Load() {
		return errStopped
	}
	err := f()
	cn.hsLeft -= time.Since(start)
	return err
}

// readClient reads len(b) bytes from the client during the handshake.
//
// A read that times out while the client's bytes are already waiting in
// the socket was the server's slowness, not the client's silence: on a
// host busy laying out a big tree the connection's goroutine can run late
// past the deadline. It is then given readGrace more, out of a grace
// budget of one handshake timeout per connection, so that a client
// trickling bytes cannot stretch the handshake without end.
func (cn *conn) readClient(b []byte) error {
	got := 0
	for {
		err := cn.clientIO(func() error {
			n, err := io.ReadFull(cn.r, b[got:])
			got += n
			return err
		})
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || cn.hsGrace <= 0 {
			return err
		}
		if cn.r.Buffered() == 0 && !bytesWaiting(cn.raw) {
			return err
		}
		g := min(readGrace, cn.hsGrace)
		cn.hsGrace -= g
		cn.hsLeft = max(cn.hsLeft, 0) + g
	}
}

// readGrace is the time a late read of waiting bytes is given (see
// readClient).
const readGrace = 100 * time.Millisecond

// handshake runs the fixed newstyle negotiation. It returns nil when the
// client has selected an export (GO acknowledged or EXPORT_NAME answered).
func (cn *conn) handshake(ctx context.Context) error {
	cn.hsLeft = cn.srv.handshakeTimeout()
	cn.hsGrace = cn.hsLeft
	var hs [handshakeLen]byte
	be.PutUint64(hs[0:], magicNBDMAGIC)
	be.PutUint64(hs[8:], magicIHAVEOPT)
	be.PutUint16(hs[16:], serverHandshakeFlags)
	if err := cn.clientIO(func() error { _, err := cn.c.Write(hs[:]); return err }); err != nil {
		if errors.Is(err, errStopped) {
			return err
		}
		return fmt.Errorf("nbd: writing handshake: %w", err)
	}
	var cf [clientFlagsLen]byte
	if err := cn.readClient(cf[:]); err != nil {
		return fmt.Errorf("nbd: reading client flags: %w", err)
	}
	flags := be.Uint32(cf[:])
	if flags&^clientFlagsKnown != 0 {
		return fmt.Errorf("%w: unknown client flags %#x", errHangup, flags)
	}
	cn.noZeroes = flags&clientFlagNoZeroes != 0

	maxOpts, maxLen := cn.srv.maxOptions(), cn.srv.maxOptionLength()
	for n := 0; ; n++ {
		if n >= maxOpts {
			return fmt.Errorf("%w: more than %d options", errHangup, maxOpts)
		}
		var h [optHeaderLen]byte
		if err := cn.readClient(h[:]); err != nil {
			return fmt.Errorf("nbd: reading option: %w", err)
		}
		if magic := be.Uint64(h[0:]); magic != magicIHAVEOPT {
			return fmt.Errorf("%w: bad option magic %#x", errHangup, magic)
		}
		opt, length := be.Uint32(h[8:]), be.Uint32(h[12:])
		if uint64(length) > uint64(maxLen) {
			// Draining it would let one client stream gigabytes into the
			// handshake: answer if the option allows, then hang up.
			switch {
			case opt == optExportName:
			case cn.tlsRequired(opt):
				cn.optError(opt, repErrTLSReqd, "TLS is required: send NBD_OPT_STARTTLS first")
			case knownOption(opt):
				cn.optError(opt, repErrTooBig, fmt.Sprintf("option data of %d bytes exceeds the limit of %d", length, maxLen))
			default:
				cn.optError(opt, repErrUnsup, fmt.Sprintf("unknown option %d", opt))
			}
			return fmt.Errorf("%w: option %d with %d bytes of data", errHangup, opt, length)
		}
		if cap(cn.optBuf) < int(length) {
			cn.optBuf = make([]byte, length)
		}
		data := cn.optBuf[:length]
		if err := cn.readClient(data); err != nil {
			return fmt.Errorf("nbd: reading option %d data: %w", opt, err)
		}
		done, err := cn.option(ctx, opt, data)
		if err != nil || done {
			return err
		}
	}
}

// tlsRequired reports whether opt must be answered NBD_REP_ERR_TLS_REQD:
// on a TLSRequire listener before STARTTLS, every option but STARTTLS,
// ABORT and EXPORT_NAME (which cannot be answered with an error).
func (cn *conn) tlsRequired(opt uint32) bool {
	if cn.mode != TLSRequire || cn.peer.TLS != nil {
		return false
	}
	switch opt {
	case optStartTLS, optAbort, optExportName:
		return false
	}
	return true
}

func knownOption(opt uint32) bool {
	switch opt {
	case optExportName, optAbort, optList, optStartTLS, optInfo, optGo,
		optStructuredReply, optListMetaContext, optSetMetaContext:
		return true
	}
	return false
}

// option handles one option; done reports that transmission starts.
func (cn *conn) option(ctx context.Context, opt uint32, data []byte) (done bool, err error) {
	if cn.tlsRequired(opt) {
		return false, cn.optError(opt, repErrTLSReqd, "TLS is required: send NBD_OPT_STARTTLS first")
	}
	if opt == optExportName && cn.mode == TLSRequire && cn.peer.TLS == nil {
		// It cannot be refused with an error: doc/proto.md asks for a disconnect.
		return false, fmt.Errorf("%w: NBD_OPT_EXPORT_NAME before STARTTLS on a listener that requires TLS", errHangup)
	}
	switch opt {
	case optExportName:
		return cn.optExportName(ctx, data)
	case optAbort:
		cn.optReply(opt, repAck, nil) // the client may already be gone
		return false, errAbort
	case optList:
		return false, cn.optList(ctx, data)
	case optStartTLS:
		return false, cn.optStartTLS(ctx, data)
	case optInfo, optGo:
		return cn.optInfoGo(ctx, opt, data)
	case optStructuredReply:
		if len(data) != 0 {
			return false, cn.optError(opt, repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data")
		}
		cn.structured = true
		return false, cn.optReply(opt, repAck, nil)
	case optListMetaContext, optSetMetaContext:
		return false, cn.optMetaContext(ctx, opt, data)
	default:
		return false, cn.optError(opt, repErrUnsup, fmt.Sprintf("unknown option %d", opt))
	}
}

// optReply writes one option reply in a single write.
func (cn *conn) optReply(opt, typ uint32, payload []byte) error {
	b := make([]byte, optReplyHeaderLen+len(payload))
	be.PutUint64(b[0:], magicOptReply)
	be.PutUint32(b[8:], opt)
	be.PutUint32(b[12:], typ)
	be.PutUint32(b[16:], uint32(len(payload)))
	copy(b[optReplyHeaderLen:], payload)
	if err := cn.clientIO(func() error { _, err := cn.c.Write(b); return err }); err != nil {
		return fmt.Errorf("nbd: writing reply to option %d: %w", opt, err)
	}
	return nil
}

// optError writes an error reply with a message for humans.
func (cn *conn) optError(opt, typ uint32, msg string) error {
	return cn.optReply(opt, typ, []byte(truncateString(msg, maxStringLen)))
}

// resolveError answers an option whose export could not be resolved. The
// resolver logs its refusals; other errors are logged here.
func (cn *conn) resolveError(opt uint32, name string, err error) error {
	shown := truncateString(name, 256)
	switch {
	case errors.Is(err, ErrTLSRequired) && cn.peer.TLS == nil && cn.mode != TLSOff:
		return cn.optError(opt, repErrTLSReqd, fmt.Sprintf("export %q requires TLS: send NBD_OPT_STARTTLS first", shown))
	case errors.Is(err, ErrTLSRequired):
		// Never TLS_REQD after TLS, nor where the client cannot start it.
		cn.log.Warn("nbd: export requires TLS the connection cannot give", "export", shown, "peer", cn.peer.String(), "tls_mode", cn.mode.String(), "err", err)
		return cn.optError(opt, repErrPolicy, fmt.Sprintf("export %q is not available to this client", shown))
	case errors.Is(err, ErrPolicy):
		return cn.optError(opt, repErrPolicy, fmt.Sprintf("export %q is not available to this client", shown))
	case errors.Is(err, ErrUnknownExport):
		return cn.optError(opt, repErrUnknown, fmt.Sprintf("unknown export %q", shown))
	}
	// The details (paths, refs) are for the log, not for any client.
	cn.log.Warn("nbd: resolving export failed", "export", shown, "err", err)
	return cn.optError(opt, repErrUnknown, fmt.Sprintf("export %q is not available (see the server's log)", shown))
}

func (cn *conn) optExportName(ctx context.Context, data []byte) (bool, error) {
	if !validString(data) {
		return false, fmt.Errorf("%w: NBD_OPT_EXPORT_NAME with an invalid name (%d bytes)", errHangup, len(data))
	}
	name := string(data)
	p, err := cn.resolve(ctx, name)
	if err != nil {
		// EXPORT_NAME cannot fail politely: the spec asks for a disconnect.
		return false, fmt.Errorf("%w: NBD_OPT_EXPORT_NAME %q: %w", errHangup, truncateString(name, 256), err)
	}
	n := exportNameReplyLen
	if !cn.noZeroes {
		n += exportNameZeroes
	}
	b := make([]byte, n)
	be.PutUint64(b[0:], uint64(p.size))
	be.PutUint16(b[8:], cn.transmissionFlags())
	if err := cn.clientIO(func() error { _, err := cn.c.Write(b); return err }); err != nil {
		return false, fmt.Errorf("nbd: writing NBD_OPT_EXPORT_NAME reply: %w", err)
	}
	cn.enter(p)
	return true, nil
}

func (cn *conn) optList(ctx context.Context, data []byte) error {
	if len(data) != 0 {
		return cn.optError(optList, repErrInvalid, "NBD_OPT_LIST takes no data")
	}
	var names []string
	if cn.srv.List != nil {
		names = cn.srv.List(ctx, cn.peer)
	}
	for _, name := range names {
		if !validString([]byte(name)) {
			continue
		}
		b := make([]byte, 4+len(name))
		be.PutUint32(b, uint32(len(name)))
		copy(b[4:], name)
		if err := cn.optReply(optList, repServer, b); err != nil {
			return err
		}
	}
	return cn.optReply(optList, repAck, nil)
}

// optInfoGo answers NBD_OPT_INFO and NBD_OPT_GO: u32 name length, name,
// u16 request count, u16 requests.
func (cn *conn) optInfoGo(ctx context.Context, opt uint32, data []byte) (bool, error) {
	const fixed = 4 + 2 // name length, request count
	if len(data) < fixed {
		return false, cn.optError(opt, repErrInvalid, "option data too short")
	}
	nameLen := be.Uint32(data)
	if uint64(nameLen) > uint64(len(data)-fixed) {
		return false, cn.optError(opt, repErrInvalid, "export name length exceeds the option data")
	}
	nameB := data[4 : 4+nameLen]
	rest := data[4+nameLen:]
	nreq := int(be.Uint16(rest))
	reqs := rest[2:]
	if len(reqs) != 2*nreq {
		return false, cn.optError(opt, repErrInvalid, "information request count does not match the option length")
	}
	if !validString(nameB) {
		return false, cn.optError(opt, repErrInvalid, "export name is not a valid string of at most 4096 bytes")
	}
	var wantName bool
	for i := 0; i < len(reqs); i += 2 {
		switch be.Uint16(reqs[i:]) {
		case infoName:
			wantName = true
		}
	}
	name := string(nameB)
	p, err := cn.resolve(ctx, name)
	if err != nil {
		return false, cn.resolveError(opt, name, err)
	}

	var ex [infoExportLen]byte
	be.PutUint16(ex[0:], infoExport)
	be.PutUint64(ex[2:], uint64(p.size))
	be.PutUint16(ex[10:], cn.transmissionFlags())
	if err := cn.optReply(opt, repInfo, ex[:]); err != nil {
		return false, err
	}
	if canon := p.canonicalName(); wantName && validString([]byte(canon)) {
		if err := cn.optReply(opt, repInfo, infoString(infoName, canon)); err != nil {
			return false, err
		}
	}
	if desc := p.exp.Description; desc != "" { // sent unasked too: harmless, and libnbd keeps it
		if err := cn.optReply(opt, repInfo, infoString(infoDescription, truncateString(desc, maxStringLen))); err != nil {
			return false, err
		}
	}
	// Sent unasked: the values are the spec's defaults, so a client that
	// ignores them is still within them.
	var bs [infoBlockSizeLen]byte
	be.PutUint16(bs[0:], infoBlockSize)
	be.PutUint32(bs[2:], minBlockSize)
	be.PutUint32(bs[6:], preferredBlockSize)
	be.PutUint32(bs[10:], maxPayload)
	if err := cn.optReply(opt, repInfo, bs[:]); err != nil {
		return false, err
	}
	if err := cn.optReply(opt, repAck, nil); err != nil {
		return false, err
	}
	if opt == optGo {
		cn.enter(p)
		return true, nil
	}
	return false, nil
}

func infoString(typ uint16, s string) []byte {
	b := make([]byte, 2+len(s))
	be.PutUint16(b, typ)
	copy(b[2:], s)
	return b
}

// optMetaContext answers LIST_META_CONTEXT and SET_META_CONTEXT: u32 name
// length, name, u32 query count, queries of u32 length + string. The only
// context is base:allocation.
func (cn *conn) optMetaContext(ctx context.Context, opt uint32, data []byte) error {
	set := opt == optSetMetaContext
	if set {
		// A SET replaces the previous selection, even when it fails.
		cn.metaName, cn.metaAlloc = "", false
	}
	if !cn.structured {
		return cn.optError(opt, repErrInvalid, "negotiate NBD_OPT_STRUCTURED_REPLY first")
	}
	invalid := func(msg string) error { return cn.optError(opt, repErrInvalid, msg) }
	if len(data) < 4 {
		return invalid("option data too short")
	}
	nameLen := be.Uint32(data)
	data = data[4:]
	if uint64(nameLen)+4 > uint64(len(data)) {
		return invalid("export name length exceeds the option data")
	}
	nameB := data[:nameLen]
	if !validString(nameB) {
		return invalid("export name is not a valid string of at most 4096 bytes")
	}
	nq := be.Uint32(data[nameLen:])
	data = data[nameLen+4:]
	match := nq == 0 && !set // an empty LIST query lists everything
	for range nq {
		if len(data) < 4 {
			return invalid("query count exceeds the option data")
		}
		ql := be.Uint32(data)
		if uint64(ql)+4 > uint64(len(data)) {
			return invalid("query length exceeds the option data")
		}
		q := data[4 : 4+ql]
		data = data[4+ql:]
		if !validString(q) {
			return invalid("query is not a valid string of at most 4096 bytes")
		}
		switch string(q) {
		case metaContextBaseAlloc:
			match = true
		case metaContextBaseAll:
			match = match || !set // a wildcard for LIST, ignored by SET
		}
	}
	if len(data) != 0 {
		return invalid("trailing bytes after the queries")
	}
	name := string(nameB)
	if _, err := cn.resolve(ctx, name); err != nil {
		return cn.resolveError(opt, name, err)
	}
	if match {
		id := uint32(0) // reserved in LIST replies
		if set {
			id = allocationContextID
		}
		b := make([]byte, metaContextIDLen+len(metaContextBaseAlloc))
		be.PutUint32(b, id)
		copy(b[metaContextIDLen:], metaContextBaseAlloc)
		if err := cn.optReply(opt, repMetaContext, b); err != nil {
			return err
		}
	}
	if set && match {
		cn.metaName, cn.metaAlloc = name, true
	}
	return cn.optReply(opt, repAck, nil)
}

// optStartTLS answers NBD_OPT_STARTTLS and upgrades the connection
// (doc/proto.md "TLS support"). A failed TLS handshake ends the connection.
func (cn *conn) optStartTLS(ctx context.Context, data []byte) error {
	switch {
	case cn.peer.TLS != nil:
		return cn.optError(optStartTLS, repErrInvalid, "TLS is already started")
	case cn.mode == TLSOff:
		return cn.optError(optStartTLS, repErrPolicy, "TLS is not enabled on this listener")
	case len(data) != 0:
		return cn.optError(optStartTLS, repErrInvalid, "NBD_OPT_STARTTLS takes no data")
	}
	if err := cn.optReply(optStartTLS, repAck, nil); err != nil {
		return err
	}
	// The client must wait for the ACK before it starts TLS: bytes already
	// read past STARTTLS are plaintext it injected, and must never be taken
	// as sent under TLS (Postfix CVE-2011-0411). The buffered reader is
	// empty, so the TLS handshake reads the raw connection from here.
	if n := cn.r.Buffered(); n > 0 {
		return fmt.Errorf("%w: %d bytes of plaintext after NBD_OPT_STARTTLS", errHangup, n)
	}
	tc := tls.Server(cn.raw, cn.srv.TLSConfig)
	if err := cn.clientIO(func() error { return tc.HandshakeContext(ctx) }); err != nil {
		if errors.Is(err, errStopped) || cn.stopping.Load() {
			return errStopped
		}
		return fmt.Errorf("%w: TLS handshake: %w", errHangup, err)
	}
	cs := tc.ConnectionState()
	cn.c = tc
	cn.r = bufio.NewReaderSize(tc, readBufferSize)
	cn.peer.TLS = &cs
	cn.forget()
	return nil
}

// forget drops what was negotiated before STARTTLS, as doc/proto.md asks:
// structured replies, meta contexts, and the pinned exports (resolved
// again, with the TLS peer, when asked for).
func (cn *conn) forget() {
	cn.structured = false
	cn.metaName, cn.metaAlloc = "", false
	for name, p := range cn.pins {
		if p.exp.Release != nil {
			p.exp.Release()
		}
		delete(cn.pins, name)
	}
	cn.pinOrder = nil
}

// enter fixes the export for transmission and drops the other pins.
func (cn *conn) enter(p *pin) {
	cn.cur = p
	cn.blockStatus = cn.structured && cn.metaAlloc && cn.metaName == p.name
	for name, q := range cn.pins {
		if q != p {
			if q.exp.Release != nil {
				q.exp.Release()
			}
			delete(cn.pins, name)
		}
	}
	cn.pinOrder = []string{p.name}
	if o := cn.srv.Observer; o != nil {
		o.ExportChosen(cn.peer, p.name)
	}
}
