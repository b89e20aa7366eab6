package nbd

import (
	"bytes"
	"testing"
)

// TestPipelinedReadsCoalesced sends many small reads (answered inline, so
// their replies are held and written together: see send) in one write,
// then NBD_CMD_DISC in the same write: every read gets its reply, with its
// own bytes, before the server closes, whether the replies were held or
// not. Some reads fail (the "bad" export's failing range), so held error
// replies are covered too, and structured replies as well as simple ones.
func TestPipelinedReadsCoalesced(t *testing.T) {
	ts := startServer(t, nil)
	img := smallImage()
	for _, structured := range []bool{false, true} {
		for _, export := range []string{"small", "bad"} {
			rc := dialRaw(t, "unix", ts.sock)
			rc.open(export, structured, false)
			const reads = 200
			var batch []byte
			want := map[uint64][]byte{}
			for i := uint64(0); i < reads; i++ {
				off, n := (i*7919)%(smallSize-8192), uint32(512+(i%8)*512)
				if i%50 == 49 {
					off = failFrom // fails on the "bad" export
				}
				b := be.AppendUint32(nil, magicRequest)
				b = be.AppendUint16(b, 0)
				b = be.AppendUint16(b, cmdRead)
				b = be.AppendUint64(b, 1000+i)
				b = be.AppendUint64(b, off)
				b = be.AppendUint32(b, n)
				batch = append(batch, b...)
				want[1000+i] = img.data[off : off+uint64(n)]
			}
			d := be.AppendUint32(nil, magicRequest)
			d = be.AppendUint16(d, 0)
			d = be.AppendUint16(d, cmdDisc)
			d = append(d, make([]byte, 8+8+4)...)
			rc.write(append(batch, d...))
			failed := 0
			for len(want) > 0 {
				var cookie uint64
				var errno uint32
				var data []byte
				if structured {
					c := rc.readChunk()
					cookie = c.cookie
					switch c.typ {
					case replyTypeOffsetData:
						data = c.payload[offsetLen:]
					case replyTypeError:
						errno = be.Uint32(c.payload)
					default:
						t.Fatalf("%s: chunk type %d", export, c.typ)
					}
					if c.flags&replyFlagDone == 0 {
						t.Fatalf("%s: read of cookie %d in more than one chunk", export, cookie)
					}
				} else {
					errno, cookie = rc.readSimple()
				}
				w, ok := want[cookie]
				if !ok {
					t.Fatalf("%s: reply for unknown or repeated cookie %d", export, cookie)
				}
				delete(want, cookie)
				if errno != 0 {
					failed++
					continue
				}
				if !structured {
					data = rc.read(len(w))
				}
				if !bytes.Equal(data, w) {
					t.Fatalf("%s, structured %v: cookie %d: wrong bytes", export, structured, cookie)
				}
			}
			if (export == "bad") != (failed > 0) {
				t.Errorf("%s, structured %v: %d reads failed", export, structured, failed)
			}
			rc.expectClosed()
		}
	}
}
