package nbd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// rawClient speaks NBD byte by byte, to send what real clients refuse to.
type rawClient struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// rawDeadline bounds every raw exchange so a server bug fails instead of
// hanging the suite.
const rawDeadline = 20 * time.Second

func dialRaw(t testing.TB, network, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(rawDeadline))
	return &rawClient{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawClient) read(n int) []byte {
	rc.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc.r, b); err != nil {
		rc.t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

func (rc *rawClient) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatalf("writing: %v", err)
	}
}

// greet reads the server's greeting and sends the client flags.
func (rc *rawClient) greet(flags uint32) {
	rc.t.Helper()
	h := rc.read(handshakeLen)
	if be.Uint64(h) != magicNBDMAGIC || be.Uint64(h[8:]) != magicIHAVEOPT || be.Uint16(h[16:]) != serverHandshakeFlags {
		rc.t.Fatalf("greeting %x", h)
	}
	rc.write(be.AppendUint32(nil, flags))
}

func (rc *rawClient) sendOptRaw(magic uint64, opt, length uint32, data []byte) {
	rc.t.Helper()
	b := be.AppendUint64(nil, magic)
	b = be.AppendUint32(b, opt)
	b = be.AppendUint32(b, length)
	rc.write(append(b, data...))
}

func (rc *rawClient) sendOpt(opt uint32, data []byte) {
	rc.t.Helper()
	rc.sendOptRaw(magicIHAVEOPT, opt, uint32(len(data)), data)
}

func (rc *rawClient) readOptReply() (opt, typ uint32, data []byte) {
	rc.t.Helper()
	h := rc.read(optReplyHeaderLen)
	if be.Uint64(h) != magicOptReply {
		rc.t.Fatalf("option reply magic %x", h)
	}
	return be.Uint32(h[8:]), be.Uint32(h[12:]), rc.read(int(be.Uint32(h[16:])))
}

// expectOpt reads one reply and checks its option and type.
func (rc *rawClient) expectOpt(opt, typ uint32) []byte {
	rc.t.Helper()
	o, ty, data := rc.readOptReply()
	if o != opt || ty != typ {
		rc.t.Fatalf("option reply (%d, %#x, %q), want (%d, %#x)", o, ty, data, opt, typ)
	}
	return data
}

// expectClosed checks that the server closes the connection without
// sending more.
func (rc *rawClient) expectClosed() {
	rc.t.Helper()
	b, err := io.ReadAll(rc.r)
	if len(b) != 0 {
		rc.t.Fatalf("expected the connection to close, got %d more bytes %x", len(b), b[:min(len(b), 64)])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		rc.t.Fatalf("the server did not close the connection")
	}
}

func infoData(name string, infos ...uint16) []byte {
	b := be.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = be.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = be.AppendUint16(b, i)
	}
	return b
}

func metaData(name string, queries ...string) []byte {
	b := be.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = be.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = be.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// infoReplies reads the replies to INFO/GO up to the ACK: size and flags.
func (rc *rawClient) infoReplies(opt uint32) (size uint64, flags uint16) {
	rc.t.Helper()
	seen := false
	for {
		o, typ, data := rc.readOptReply()
		if o != opt {
			rc.t.Fatalf("reply to option %d, want %d", o, opt)
		}
		switch typ {
		case repAck:
			if !seen {
				rc.t.Fatal("ACK without NBD_INFO_EXPORT")
			}
			return size, flags
		case repInfo:
			if len(data) >= 2 && be.Uint16(data) == infoExport {
				if len(data) != infoExportLen {
					rc.t.Fatalf("NBD_INFO_EXPORT of %d bytes", len(data))
				}
				size, flags, seen = be.Uint64(data[2:]), be.Uint16(data[10:]), true
			}
		default:
			rc.t.Fatalf("reply type %#x %q to option %d", typ, data, opt)
		}
	}
}

// open greets and selects name with GO, optionally negotiating structured
// replies and base:allocation first.
func (rc *rawClient) open(name string, structured, meta bool) (uint64, uint16) {
	rc.t.Helper()
	rc.greet(clientFlagFixedNewstyle | clientFlagNoZeroes)
	if structured {
		rc.sendOpt(optStructuredReply, nil)
		rc.expectOpt(optStructuredReply, repAck)
	}
	if meta {
		rc.sendOpt(optSetMetaContext, metaData(name, metaContextBaseAlloc))
		if d := rc.expectOpt(optSetMetaContext, repMetaContext); string(d[4:]) != metaContextBaseAlloc {
			rc.t.Fatalf("meta context %q", d)
		}
		rc.expectOpt(optSetMetaContext, repAck)
	}
	rc.sendOpt(optGo, infoData(name))
	return rc.infoReplies(optGo)
}

func (rc *rawClient) sendReq(flags, typ uint16, cookie, off uint64, length uint32, payload []byte) {
	rc.t.Helper()
	b := be.AppendUint32(nil, magicRequest)
	b = be.AppendUint16(b, flags)
	b = be.AppendUint16(b, typ)
	b = be.AppendUint64(b, cookie)
	b = be.AppendUint64(b, off)
	b = be.AppendUint32(b, length)
	rc.write(append(b, payload...))
}

// readSimple reads a simple reply header.
func (rc *rawClient) readSimple() (errno uint32, cookie uint64) {
	rc.t.Helper()
	h := rc.read(simpleReplyHeaderLen)
	if be.Uint32(h) != magicSimpleReply {
		rc.t.Fatalf("simple reply magic %x", h)
	}
	return be.Uint32(h[4:]), be.Uint64(h[8:])
}

// expectSimple reads a simple reply and checks cookie and error.
func (rc *rawClient) expectSimple(cookie uint64, errno uint32) {
	rc.t.Helper()
	e, c := rc.readSimple()
	if e != errno || c != cookie {
		rc.t.Fatalf("simple reply (error %d, cookie %#x), want (%d, %#x)", e, c, errno, cookie)
	}
}

type chunk struct {
	flags, typ uint16
	cookie     uint64
	payload    []byte
}

func (rc *rawClient) readChunk() chunk {
	rc.t.Helper()
	h := rc.read(chunkHeaderLen)
	if be.Uint32(h) != magicStructuredReply {
		rc.t.Fatalf("structured reply magic %x", h)
	}
	return chunk{be.Uint16(h[4:]), be.Uint16(h[6:]), be.Uint64(h[8:]), rc.read(int(be.Uint32(h[16:])))}
}

// structuredRead collects a structured read reply into data (holes as
// zeros); it returns the error of an error chunk, if any.
func (rc *rawClient) structuredRead(cookie, off uint64, n int) (data []byte, errno uint32, chunks int) {
	rc.t.Helper()
	data = make([]byte, n)
	for {
		c := rc.readChunk()
		chunks++
		if c.cookie != cookie {
			rc.t.Fatalf("chunk cookie %#x, want %#x", c.cookie, cookie)
		}
		switch c.typ {
		case replyTypeOffsetData:
			o := be.Uint64(c.payload) - off
			copy(data[o:], c.payload[offsetLen:])
		case replyTypeOffsetHole:
			if be.Uint32(c.payload[8:]) < minHoleChunk {
				rc.t.Errorf("hole of %d bytes", be.Uint32(c.payload[8:]))
			}
		case replyTypeError:
			errno = be.Uint32(c.payload)
		case replyTypeNone:
		default:
			rc.t.Fatalf("chunk type %d", c.typ)
		}
		if c.flags&replyFlagDone != 0 {
			return data, errno, chunks
		}
	}
}

// checkFresh proves the server still serves a new client correctly.
func checkFresh(t *testing.T, ts *testServer) {
	t.Helper()
	rc := dialRaw(t, "unix", ts.sock)
	size, _ := rc.open("", false, false)
	if size != smallSize {
		t.Fatalf("fresh client: size %d", size)
	}
	rc.sendReq(0, cmdRead, 7, 0x5000, 4096, nil)
	rc.expectSimple(7, 0)
	if got := rc.read(4096); !bytes.Equal(got, smallImage().data[0x5000:0x6000]) {
		t.Fatal("fresh client: wrong data")
	}
	rc.sendReq(0, cmdDisc, 8, 0, 0, nil)
	rc.expectClosed()
}
