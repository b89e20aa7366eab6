package nbd

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Raw-socket tests for the hostile inputs of issue 3 that libnbd will not
// send. Every case is followed by a fresh client that must be served.

func TestHostileHandshake(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.HandshakeTimeout = 2 * time.Second })
	const unknownOpt = 99
	cases := []struct {
		name string
		run  func(t *testing.T, rc *rawClient)
	}{
		{"unknown client flags", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle | 1<<2)
			rc.expectClosed()
		}},
		{"bad option magic", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOptRaw(0x1122334455667788, optGo, 0, nil)
			rc.expectClosed()
		}},
		{"LIST with data", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optList, []byte("x"))
			rc.expectOpt(optList, repErrInvalid)
			rc.sendOpt(optList, nil)
			for _, name := range testExportNames {
				if d := rc.expectOpt(optList, repServer); string(d[4:]) != name || int(be.Uint32(d)) != len(name) {
					t.Fatalf("LIST entry %q, want %q", d, name)
				}
			}
			rc.expectOpt(optList, repAck)
		}},
		{"GO name length exceeds the option", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optGo, append(be.AppendUint32(nil, 100), "ab\x00\x00"...))
			rc.expectOpt(optGo, repErrInvalid)
			rc.sendOpt(optGo, be.AppendUint32(nil, 0xffffffff)[:4])
			rc.expectOpt(optGo, repErrInvalid)
			rc.sendOpt(optGo, []byte{0, 0})
			rc.expectOpt(optGo, repErrInvalid)
		}},
		{"INFO with trailing bytes", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optInfo, append(infoData("", infoName), 0))
			rc.expectOpt(optInfo, repErrInvalid)
			rc.sendOpt(optInfo, infoData("", infoName))
			if size, _ := rc.infoReplies(optInfo); size != smallSize {
				t.Fatalf("size %d", size)
			}
		}},
		{"unknown option with length 0xFFFFFFF0", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOptRaw(magicIHAVEOPT, unknownOpt, 0xFFFFFFF0, make([]byte, 4096))
			rc.expectOpt(unknownOpt, repErrUnsup)
			rc.expectClosed()
		}},
		{"INFO with length 0xFFFFFFF0", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOptRaw(magicIHAVEOPT, optInfo, 0xFFFFFFF0, make([]byte, 4096))
			rc.expectOpt(optInfo, repErrTooBig)
			rc.expectClosed()
		}},
		{"unknown option id", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(unknownOpt, []byte("12345"))
			rc.expectOpt(unknownOpt, repErrUnsup)
			rc.sendOpt(4, nil) // NBD_OPT_PEEK_EXPORT, withdrawn
			rc.expectOpt(4, repErrUnsup)
			rc.sendOpt(11, nil) // NBD_OPT_EXTENDED_HEADERS, not implemented
			rc.expectOpt(11, repErrUnsup)
			rc.sendOpt(optInfo, infoData(""))
			rc.infoReplies(optInfo)
		}},
		{"STARTTLS without TLS", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optStartTLS, nil)
			rc.expectOpt(optStartTLS, repErrPolicy)
			rc.sendOpt(optInfo, infoData(""))
			rc.infoReplies(optInfo)
		}},
		{"SET_META_CONTEXT before STRUCTURED_REPLY", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optSetMetaContext, metaData("", metaContextBaseAlloc))
			rc.expectOpt(optSetMetaContext, repErrInvalid)
			rc.sendOpt(optListMetaContext, metaData(""))
			rc.expectOpt(optListMetaContext, repErrInvalid)
			rc.sendOpt(optGo, infoData(""))
			_, flags := rc.infoReplies(optGo)
			if flags&tflagSendDF != 0 {
				t.Fatalf("SEND_DF without structured replies: flags %#x", flags)
			}
			rc.sendReq(0, cmdBlockStatus, 1, 0, 4096, nil)
			rc.expectSimple(1, errInval)
		}},
		{"meta context parsing", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optStructuredReply, nil)
			rc.expectOpt(optStructuredReply, repAck)
			rc.sendOpt(optListMetaContext, metaData(""))
			if d := rc.expectOpt(optListMetaContext, repMetaContext); string(d[4:]) != metaContextBaseAlloc {
				t.Fatalf("LIST_META_CONTEXT %q", d)
			}
			rc.expectOpt(optListMetaContext, repAck)
			rc.sendOpt(optListMetaContext, metaData("", "base:"))
			rc.expectOpt(optListMetaContext, repMetaContext)
			rc.expectOpt(optListMetaContext, repAck)
			rc.sendOpt(optSetMetaContext, metaData("", "base:", "qemu:dirty-bitmap:x", "nope:x"))
			rc.expectOpt(optSetMetaContext, repAck) // nothing selected
			rc.sendOpt(optSetMetaContext, append(metaData("", metaContextBaseAlloc), 0))
			rc.expectOpt(optSetMetaContext, repErrInvalid)
			bad := metaData("", metaContextBaseAlloc)
			rc.sendOpt(optSetMetaContext, bad[:len(bad)-1])
			rc.expectOpt(optSetMetaContext, repErrInvalid)
			rc.sendOpt(optSetMetaContext, metaData("nope", metaContextBaseAlloc))
			rc.expectOpt(optSetMetaContext, repErrUnknown)
		}},
		{"STRUCTURED_REPLY with data", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optStructuredReply, []byte{1})
			rc.expectOpt(optStructuredReply, repErrInvalid)
			rc.sendOpt(optGo, infoData(""))
			rc.infoReplies(optGo)
			rc.sendReq(0, cmdRead, 3, 0, 16, nil)
			rc.expectSimple(3, 0) // structured replies were not negotiated
			rc.read(16)
		}},
		{"GO unknown export", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optGo, infoData("nope"))
			rc.expectOpt(optGo, repErrUnknown)
			rc.sendOpt(optInfo, infoData(""))
			rc.infoReplies(optInfo)
			rc.sendOpt(optGo, infoData("nope"))
			rc.expectOpt(optGo, repErrUnknown)
			rc.sendOpt(optGo, infoData(""))
			rc.infoReplies(optGo)
		}},
		{"ABORT with data", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optAbort, []byte("bye"))
			rc.expectOpt(optAbort, repAck)
			rc.expectClosed()
		}},
		{"EXPORT_NAME known", func(t *testing.T, rc *rawClient) {
			rc.greet(0)
			rc.sendOpt(optExportName, []byte("big"))
			b := rc.read(exportNameReplyLen + exportNameZeroes)
			if be.Uint64(b) != bigSize || be.Uint16(b[8:])&(tflagHasFlags|tflagReadOnly) != tflagHasFlags|tflagReadOnly ||
				!bytes.Equal(b[10:], make([]byte, exportNameZeroes)) {
				t.Fatalf("EXPORT_NAME reply %x", b)
			}
			rc.sendReq(0, cmdRead, 5, 1000, 10, nil)
			rc.expectSimple(5, 0)
			if got := rc.read(10); got[3] != genByte(1003) {
				t.Fatalf("data %x", got)
			}
		}},
		{"EXPORT_NAME with NO_ZEROES", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle | clientFlagNoZeroes)
			rc.sendOpt(optExportName, nil)
			if b := rc.read(exportNameReplyLen); be.Uint64(b) != smallSize {
				t.Fatalf("EXPORT_NAME reply %x", b)
			}
			rc.sendReq(0, cmdRead, 5, 0, 0, nil)
			rc.expectSimple(5, 0) // no zero padding came before this reply
		}},
		{"EXPORT_NAME unknown", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optExportName, []byte("nope"))
			rc.expectClosed()
		}},
		{"4097-byte name in GO", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optGo, infoData(strings.Repeat("a", 4097)))
			rc.expectOpt(optGo, repErrInvalid)
			rc.sendOpt(optGo, infoData("small"))
			rc.infoReplies(optGo)
		}},
		{"4097-byte name in EXPORT_NAME", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			rc.sendOpt(optExportName, []byte(strings.Repeat("a", 4097)))
			rc.expectClosed()
		}},
		{"silent client", func(t *testing.T, rc *rawClient) {
			rc.read(handshakeLen)
			rc.expectClosed() // the handshake deadline ends it
		}},
		{"silent after GO is fine", func(t *testing.T, rc *rawClient) {
			rc.open("", false, false)
			time.Sleep(2500 * time.Millisecond) // longer than the handshake deadline
			rc.sendReq(0, cmdRead, 1, 0, 8, nil)
			rc.expectSimple(1, 0)
			rc.read(8)
		}},
		{"10,000 options", func(t *testing.T, rc *rawClient) {
			rc.greet(clientFlagFixedNewstyle)
			var opts []byte
			for range 10000 {
				opts = be.AppendUint64(opts, magicIHAVEOPT)
				opts = be.AppendUint32(opts, unknownOpt)
				opts = be.AppendUint32(opts, 0)
			}
			go rc.c.Write(opts) // fails once the server hangs up
			replies := 0
			for {
				h := make([]byte, optReplyHeaderLen)
				if _, err := io.ReadFull(rc.r, h); err != nil {
					break
				}
				if _, err := io.ReadFull(rc.r, make([]byte, be.Uint32(h[16:]))); err != nil {
					break
				}
				replies++
			}
			if replies != DefaultMaxOptions {
				t.Fatalf("%d replies before the hang-up, want %d", replies, DefaultMaxOptions)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, dialRaw(t, "tcp", ts.tcp))
			checkFresh(t, ts)
		})
	}
	if err := ts.srv.Shutdown(context.Background()); err != nil { // every connection has logged
		t.Fatal(err)
	}
	logs := ts.log.String()
	for _, want := range []string{"unknown client flags 0x5", "bad option magic", "more than 256 options", "i/o timeout", "option 99 with 4294967280 bytes"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestHostileTransmission(t *testing.T) {
	ts := startServer(t, nil)
	img := smallImage().data
	cases := []struct {
		name string
		run  func(t *testing.T, rc *rawClient)
	}{
		{"reads at the end, across it, at 2^64-512", func(t *testing.T, rc *rawClient) {
			rc.open("", false, false)
			rc.sendReq(0, cmdRead, 1, smallSize-512, 512, nil)
			rc.expectSimple(1, 0)
			if !bytes.Equal(rc.read(512), img[smallSize-512:]) {
				t.Fatal("last sector differs")
			}
			rc.sendReq(0, cmdRead, 2, smallSize-512, 1024, nil)
			rc.expectSimple(2, errInval)
			rc.sendReq(0, cmdRead, 3, 1<<64-512, 512, nil)
			rc.expectSimple(3, errInval)
			rc.sendReq(0, cmdRead, 4, smallSize, 0, nil)
			rc.expectSimple(4, 0)
			rc.sendReq(0, cmdRead, 5, smallSize+1, 0, nil)
			rc.expectSimple(5, errInval)
		}},
		{"zero-length and flagged reads", func(t *testing.T, rc *rawClient) {
			rc.open("", false, false)
			rc.sendReq(0, cmdRead, 1, 0, 0, nil)
			rc.expectSimple(1, 0)
			for i, f := range []uint16{1, cmdFlagDF, 1 << 9, 0xffff} { // FUA and DF not negotiated, unknown bits
				rc.sendReq(f, cmdRead, uint64(10+i), 0, 512, nil)
				rc.expectSimple(uint64(10+i), errInval)
			}
		}},
		{"structured reads", func(t *testing.T, rc *rawClient) {
			_, flags := rc.open("", true, false)
			if flags&tflagSendDF == 0 {
				t.Fatalf("flags %#x", flags)
			}
			rc.sendReq(0, cmdRead, 1, 0, 0, nil)
			if c := rc.readChunk(); c.typ != replyTypeNone || c.flags != replyFlagDone || c.cookie != 1 {
				t.Fatalf("zero-length structured read: %+v", c)
			}
			for i, f := range []uint16{0, cmdFlagDF} {
				cookie := uint64(20 + i)
				rc.sendReq(f, cmdRead, cookie, 0x8000, 0x40000, nil) // data, hole, data
				data, errno, chunks := rc.structuredRead(cookie, 0x8000, 0x40000)
				if errno != 0 || !bytes.Equal(data, img[0x8000:0x48000]) {
					t.Fatalf("flags %d: error %d, data differs %v", f, errno, !bytes.Equal(data, img[0x8000:0x48000]))
				}
				if want := map[uint16]int{0: 3, cmdFlagDF: 1}[f]; chunks != want {
					t.Fatalf("flags %d: %d chunks, want %d", f, chunks, want)
				}
			}
			rc.sendReq(1<<9, cmdRead, 9, 0, 512, nil)
			if _, errno, _ := rc.structuredRead(9, 0, 512); errno != errInval {
				t.Fatalf("unknown flag: error %d", errno)
			}
		}},
		{"WRITE with payload", func(t *testing.T, rc *rawClient) {
			rc.open("", false, false)
			payload := bytes.Repeat([]byte{0xAA}, 4096)
			rc.sendReq(0, cmdWrite, 1, 0, 4096, payload)
			rc.expectSimple(1, errPerm)
			rc.sendReq(0, cmdRead, 2, 0, 4096, nil)
			rc.expectSimple(2, 0)
			if !bytes.Equal(rc.read(4096), img[:4096]) {
				t.Fatal("data changed")
			}
		}},
		{"WRITE payload above the maximum", func(t *testing.T, rc *rawClient) {
			rc.open("", false, false)
			rc.sendReq(0, cmdWrite, 1, 0, maxPayload+1, make([]byte, 4096))
			rc.expectClosed()
		}},
		{"TRIM, WRITE_ZEROES, FLUSH, CACHE", func(t *testing.T, rc *rawClient) {
			rc.open("", false, false)
			rc.sendReq(0, cmdTrim, 1, 0, 4096, nil)
			rc.expectSimple(1, errPerm)
			rc.sendReq(0, cmdWriteZeroes, 2, 0, 4096, nil)
			rc.expectSimple(2, errPerm)
			rc.sendReq(0, cmdFlush, 3, 0, 0, nil)
			rc.expectSimple(3, 0)
			rc.sendReq(0, cmdCache, 4, 0, 1<<20, nil)
			rc.expectSimple(4, 0)
			rc.sendReq(0, cmdCache, 5, smallSize, 1, nil)
			rc.expectSimple(5, errInval)
			rc.sendReq(0, cmdFlush, 6, 123, 4096, nil) // reserved fields set: still no payload expected
			rc.expectSimple(6, 0)
		}},
		{"BLOCK_STATUS without a context", func(t *testing.T, rc *rawClient) {
			rc.open("", true, false)
			rc.sendReq(0, cmdBlockStatus, 1, 0, 4096, nil)
			if c := rc.readChunk(); c.typ != replyTypeError || be.Uint32(c.payload) != errInval || c.cookie != 1 {
				t.Fatalf("chunk %+v", c)
			}
		}},
		{"BLOCK_STATUS", func(t *testing.T, rc *rawClient) {
			rc.open("", true, true)
			rc.sendReq(0, cmdBlockStatus, 1, 0, smallSize, nil)
			c := rc.readChunk()
			if c.typ != replyTypeBlockStatus || c.flags != replyFlagDone || be.Uint32(c.payload) != allocationContextID {
				t.Fatalf("chunk %+v", c)
			}
			var got strings.Builder
			off := 0
			for d := c.payload[4:]; len(d) > 0; d = d[8:] {
				n, fl := be.Uint32(d), be.Uint32(d[4:])
				typ, desc := 0, "data"
				if fl == stateHole|stateZero {
					typ, desc = 3, "hole,zero"
				}
				got.WriteString(strings.Join([]string{itoa(off), itoa(int(n)), itoa(typ), desc}, " ") + "\n")
				off += int(n)
			}
			if want := expectedMap(smallImage()); got.String() != want {
				t.Fatalf("block status:\n%s\nwant:\n%s", got.String(), want)
			}
			rc.sendReq(cmdFlagReqOne, cmdBlockStatus, 2, 0x10000, 0x1000, nil)
			c = rc.readChunk()
			if len(c.payload) != 12 || be.Uint32(c.payload[4:]) != 0x1000 || be.Uint32(c.payload[8:]) != stateHole|stateZero {
				t.Fatalf("REQ_ONE chunk %+v", c)
			}
			for i, r := range [][2]uint64{{smallSize, 1}, {0, 0}, {1<<64 - 512, 512}} {
				rc.sendReq(0, cmdBlockStatus, uint64(3+i), r[0], uint32(r[1]), nil)
				if c := rc.readChunk(); c.typ != replyTypeError || be.Uint32(c.payload) != errInval {
					t.Fatalf("block status %v: %+v", r, c)
				}
			}
		}},
		{"unknown command with a length", func(t *testing.T, rc *rawClient) {
			rc.open("", false, false)
			rc.sendReq(0, 99, 1, 0, 4096, nil)
			rc.expectSimple(1, errInval)
			rc.sendReq(0, cmdRead, 2, 0, 8, nil) // answered: no payload was awaited
			rc.expectSimple(2, 0)
			rc.read(8)
		}},
		{"bad request magic", func(t *testing.T, rc *rawClient) {
			rc.open("", false, false)
			rc.write(make([]byte, requestHeaderLen))
			rc.expectClosed()
		}},
		{"64 MiB read", func(t *testing.T, rc *rawClient) {
			rc.open("big", false, false)
			rc.sendReq(0, cmdRead, 1, 0, 64<<20, nil)
			rc.expectSimple(1, errInval)
			rc.sendReq(0, cmdRead, 2, 0, maxPayload, nil) // the advertised maximum works
			rc.expectSimple(2, 0)
			if b := rc.read(maxPayload); b[maxPayload-1] != genByte(maxPayload-1) {
				t.Fatal("data differs")
			}
		}},
		{"64 MiB structured read", func(t *testing.T, rc *rawClient) {
			rc.open("big", true, false)
			rc.sendReq(0, cmdRead, 1, 0, 64<<20, nil)
			if c := rc.readChunk(); c.typ != replyTypeError || be.Uint32(c.payload) != errInval {
				t.Fatalf("chunk %+v", c)
			}
		}},
		{"8 pipelined reads then DISC", func(t *testing.T, rc *rawClient) {
			rc.open("", false, false)
			want := map[uint64]uint64{}
			for i := range 8 {
				cookie, off := 0xC0FFEE00+uint64(i)*0x10001, uint64(i)*0x9000+77
				want[cookie] = off
				rc.sendReq(0, cmdRead, cookie, off, 0x3000, nil)
			}
			rc.sendReq(0, cmdDisc, 0xD15C, 0, 0, nil)
			for range 8 {
				errno, cookie := rc.readSimple()
				off, ok := want[cookie]
				if errno != 0 || !ok {
					t.Fatalf("reply error %d cookie %#x", errno, cookie)
				}
				delete(want, cookie)
				if !bytes.Equal(rc.read(0x3000), img[off:off+0x3000]) {
					t.Fatalf("cookie %#x: data differs", cookie)
				}
			}
			rc.expectClosed()
		}},
		{"read error", func(t *testing.T, rc *rawClient) {
			rc.open("bad", false, false)
			rc.sendReq(0, cmdRead, 1, failFrom-100, 200, nil)
			rc.expectSimple(1, errIO)
			rc.sendReq(0, cmdRead, 2, failFrom-100, 100, nil)
			rc.expectSimple(2, 0)
			rc.read(100)
		}},
		{"structured read error", func(t *testing.T, rc *rawClient) {
			rc.open("bad", true, false)
			rc.sendReq(0, cmdRead, 1, failFrom, 4096, nil)
			c := rc.readChunk()
			if c.typ != replyTypeError || c.flags != replyFlagDone || be.Uint32(c.payload) != errIO ||
				!strings.Contains(string(c.payload[errorPayloadLen:]), "read error") ||
				strings.Contains(string(c.payload[errorPayloadLen:]), "dir/broken.bin") {
				// Paths and object ids go to the log, not to clients.
				t.Fatalf("chunk %+v", c)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, dialRaw(t, "unix", ts.sock))
			checkFresh(t, ts)
		})
	}
	if err := ts.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if logs := ts.log.String(); !strings.Contains(logs, "nbd: read failed") || !strings.Contains(logs, "blob 0123456789abcdef0123456789abcdef01234567") {
		t.Errorf("no read error logged with path and object:\n%s", logs)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
