package nbd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// nbdshScript drives libnbd's Python bindings through every hostile input
// of issue 3 that libnbd can send (strict mode off), each followed by a
// fresh connection that must be served. It prints "ok NAME" per case.
//
// libnbd 1.14 refuses the rest on the client side, so raw_test.go and
// hostile_test.go send them: unknown client flags, bad option or request
// magic, LIST/STRUCTURED_REPLY/ABORT with data, malformed INFO/GO lengths,
// huge or unknown options, SET_META_CONTEXT before STRUCTURED_REPLY ("server
// lacks structured replies"), a 4097-byte name (ENAMETOOLONG), unknown
// commands, a silent client and 10,000 options.
const nbdshScript = `
import nbd, os, sys
sock = os.environ["NBD_SOCK"]
tcp_host, tcp_port = os.environ["NBD_TCP"].rsplit(":", 1)
size = int(os.environ["NBD_SIZE"])
big = int(os.environ["NBD_BIG"])
fail_from = int(os.environ["NBD_FAIL_FROM"])
data = open(os.environ["NBD_DATA"], "rb").read()
assert len(data) == size

def handle(name="", opt=False, strict=True, structured=True, meta=False, flags=None, tcp=False):
    h = nbd.NBD()
    h.set_export_name(name)
    if opt:
        h.set_opt_mode(True)
    if not strict:
        h.set_strict_mode(0)
    if flags is not None:
        h.set_handshake_flags(flags)
    h.set_request_structured_replies(structured)
    if meta:
        h.add_meta_context("base:allocation")
    if tcp:
        h.connect_tcp(tcp_host, tcp_port)
    else:
        h.connect_unix(sock)
    return h

def fails(errno, f, *args):
    try:
        f(*args)
    except nbd.Error as e:
        assert e.errno == errno, (e.errno, errno, e.string)
        return
    raise AssertionError("%s%r succeeded, want %s" % (f.__name__, args, errno))

def fresh():
    h = handle(tcp=True)
    assert h.pread(4096, 0x5000) == data[0x5000:0x6000]
    h.shutdown()

def case(f):
    f()
    fresh()
    print("ok", f.__name__)
    sys.stdout.flush()

@case
def reads_at_end_across_end_and_2_64():
    for structured in (True, False):
        h = handle(strict=False, structured=structured)
        assert h.pread(512, size - 512) == data[-512:]
        fails("EINVAL", h.pread, 1024, size - 512)
        fails("EINVAL", h.pread, 512, 2**64 - 512)
        assert h.pread(512, size - 512) == data[-512:]
        h.shutdown()

@case
def zero_length_read():
    for structured in (True, False):
        h = handle(strict=False, structured=structured)
        assert h.pread(0, 0) == b""
        assert h.pread(0, size) == b""
        h.shutdown()

@case
def reads_with_unknown_flags():
    for structured in (True, False):
        h = handle(strict=False, structured=structured)
        for fl in (nbd.CMD_FLAG_FUA, 1 << 9, nbd.CMD_FLAG_REQ_ONE):
            fails("EINVAL", h.pread, 512, 0, fl)
        h.shutdown()
    h = handle(strict=False)
    assert h.can_df()
    assert h.pread(0x40000, 0x8000, nbd.CMD_FLAG_DF) == data[0x8000:0x48000]
    h.shutdown()

@case
def write_with_payload():
    h = handle(strict=False)
    assert h.is_read_only()
    fails("EPERM", h.pwrite, b"\xaa" * 65536, 0)
    assert h.pread(65536, 0) == data[:65536]
    h.shutdown()

@case
def trim_and_write_zeroes():
    h = handle(strict=False)
    assert not h.can_trim() and not h.can_zero()
    fails("EPERM", h.trim, 4096, 0)
    fails("EPERM", h.zero, 4096, 0)
    assert h.pread(4096, 0) == data[:4096]
    h.shutdown()

@case
def flush_and_cache():
    h = handle(strict=False)
    h.flush()
    h.cache(1 << 20, 0)
    fails("EINVAL", h.cache, 4096, size)
    assert h.pread(4096, 0) == data[:4096]
    h.shutdown()

@case
def block_status_without_context():
    for structured in (True, False):
        h = handle(strict=False, structured=structured)
        fails("EINVAL", h.block_status, 4096, 0, lambda *a: 0)
        h.shutdown()

@case
def block_status():
    h = handle(meta=True)
    assert h.can_meta_context("base:allocation")
    got = []
    def cb(ctx, off, entries, err):
        assert ctx == "base:allocation"
        got.extend(entries)
        return 0
    h.block_status(size, 0, cb)
    extents = []
    off = 0
    for i in range(0, len(got), 2):
        extents.append((off, got[i], got[i + 1]))
        off += got[i]
    assert off == size, off
    for o, n, fl in extents:
        chunk = data[o:o + n]
        assert (fl == 3) == (chunk.count(0) == n), (o, n, fl)
    assert (0x10000, 0x30000, 3) in extents, extents
    h.shutdown()

@case
def read_64_mib():
    h = handle("big", strict=False)
    assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 << 20
    fails("EINVAL", h.pread, 64 << 20, 0)
    assert len(h.pread(32 << 20, big - (32 << 20))) == 32 << 20
    h.shutdown()

@case
def eight_pipelined_reads_then_disc():
    for structured in (True, False):
        h = handle(structured=structured)
        bufs = []
        for i in range(8):
            b = nbd.Buffer(0x3000)
            cookie = h.aio_pread(b, i * 0x9000 + 77)
            bufs.append((cookie, i * 0x9000 + 77, b))
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for cookie, off, b in bufs:
            assert h.aio_command_completed(cookie)
            assert b.to_bytearray() == data[off:off + 0x3000], off
        h.shutdown()

@case
def read_error_keeps_the_connection():
    for structured in (True, False):
        h = handle("bad", structured=structured)
        fails("EIO", h.pread, 4096, fail_from)
        assert h.pread(4096, 0) == data[:4096]
        h.shutdown()

@case
def starttls():
    h = nbd.NBD()
    h.set_tls(nbd.TLS_ALLOW)
    h.connect_unix(sock)
    assert not h.get_tls_negotiated()
    assert h.pread(4096, 0) == data[:4096]
    h.shutdown()

@case
def go_unknown_export():
    h = handle("nope", opt=True)
    fails("ENOENT", h.opt_go)
    h.set_export_name("")
    h.opt_go()
    assert h.pread(4096, 0) == data[:4096]
    h.shutdown()

@case
def info_ok_then_go_unknown():
    h = handle("small", opt=True)
    h.opt_info()
    assert h.get_size() == size
    h.set_export_name("nope")
    fails("ENOENT", h.opt_go)
    h.set_export_name("small")
    h.opt_go()
    assert h.get_size() == size
    h.shutdown()

@case
def export_name_known_and_unknown():
    for flags in (0, nbd.HANDSHAKE_FLAG_FIXED_NEWSTYLE):
        h = nbd.NBD()
        h.set_handshake_flags(flags)
        h.set_opt_mode(False)
        h.set_request_structured_replies(False)
        h.set_export_name("big")
        h.connect_unix(sock)
        assert h.get_size() == big and h.is_read_only()
        h.shutdown()
    h = nbd.NBD()
    h.set_handshake_flags(0)
    h.set_export_name("nope")
    try:
        h.connect_unix(sock)
    except nbd.Error:
        pass
    else:
        raise AssertionError("EXPORT_NAME of an unknown export connected")

@case
def list_and_abort():
    h = handle(opt=True)
    names = []
    h.opt_list(lambda name, desc: names.append(name) or 0)
    assert "" in names and "big" in names, names
    ctxs = []
    h.opt_list_meta_context(lambda name: ctxs.append(name) or 0)
    assert ctxs == ["base:allocation"], ctxs
    h.opt_abort()

@case
def multi_conn_flag():
    h = handle()
    assert h.can_multi_conn() and h.can_flush() and h.can_cache()
    assert h.get_export_description() == os.environ["NBD_DESC"]
    h.shutdown()
`

func TestNbdshHostile(t *testing.T) {
	testutil.NeedTool(t, "nbdsh", "python3-libnbd")
	ts := startServer(t, nil)
	data := filepath.Join(t.TempDir(), "small.img")
	if err := os.WriteFile(data, smallImage().data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NBD_SOCK", ts.sock)
	t.Setenv("NBD_TCP", ts.tcp)
	t.Setenv("NBD_SIZE", strconv.Itoa(smallSize))
	t.Setenv("NBD_BIG", strconv.Itoa(bigSize))
	t.Setenv("NBD_FAIL_FROM", strconv.Itoa(failFrom))
	t.Setenv("NBD_DATA", data)
	t.Setenv("NBD_DESC", testDescription)
	out := runTool(t, "nbdsh", "-n", "-c", nbdshScript)
	if n := strings.Count(out, "ok "); n != strings.Count(nbdshScript, "@case") {
		t.Errorf("nbdsh ran %d cases, want %d:\n%s", n, strings.Count(nbdshScript, "@case"), out)
	}
}
