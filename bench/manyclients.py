#!/usr/bin/python3
"""Read NBD exports through many connections at once and check every byte.

Each export (URI, IMAGE) is cut into CONNS/len(exports) contiguous parts of
whole 4 KiB blocks; each part is read by its own connection, all at the same
time, with DEPTH requests of up to 256 KiB in flight, and every reply is
compared with the same range of IMAGE. With CONNS 1 the exports are read one
after the other over one connection each. Prints the bytes read and the
seconds taken (from the first request to the last reply; the connections are
made before); exits 1 naming the first differing range.

One thread drives every connection (libnbd's asynchronous calls around one
poll), so that the client costs the same per byte however many connections
it holds: with a thread per connection, 64 Python threads took the GIL from
each other and cost the client half as much again as one connection did, on
the two cores it shares with the server.

usage: manyclients.py CONNS DEPTH URI IMAGE [URI IMAGE ...]
Needs python3-libnbd (run with Debian's /usr/bin/python3).
"""

import mmap
import os
import select
import sys
import time

import nbd

CHUNK = 256 << 10
BLOCK = 4096


class Part:
    """One connection reading [off, end) of an export, checked against image."""

    def __init__(self, uri, image, start, end, depth):
        self.uri, self.image, self.off, self.end = uri, image, start, end
        self.h = nbd.NBD()
        self.h.connect_uri(uri)
        self.free = [nbd.Buffer(CHUNK) for _ in range(depth)]
        self.inflight = 0
        self.error = None

    def done(self):
        return self.error is not None or (self.off >= self.end and self.inflight == 0)

    def submit(self):
        while self.error is None and self.off < self.end and self.free:
            n = min(CHUNK, self.end - self.off)
            buf = self.free.pop()
            if buf.size() != n:
                buf = nbd.Buffer(n)
            o = self.off
            self.h.aio_pread(buf, o, completion=lambda err, o=o, buf=buf: self.check(err, o, buf))
            self.off += n
            self.inflight += 1

    def check(self, err, o, buf):
        """Completion of the read of buf at o: compare it; 1 retires the command."""
        self.inflight -= 1
        n = buf.size()
        if err.value != 0:
            self.error = f"{self.uri}: read of bytes {o}..{o + n} failed: errno {err.value}"
        # to_buffer shares the reply's memory and image is an mmap: one memcmp
        elif self.image[o : o + n] != memoryview(buf.to_buffer()):
            self.error = f"{self.uri}: bytes {o}..{o + n} differ from the image"
        else:
            self.free.append(buf)
        return 1


def run(parts):
    """Drive parts until each has read its range or failed; the first error or None."""
    poller = select.poll()
    byfd = {}
    live = list(parts)
    while live:
        for p in live:
            p.submit()
        live = [p for p in live if not p.done()]
        if not live:
            break
        # register each live handle for the direction libnbd waits on now
        for p in live:
            fd = p.h.aio_get_fd()
            d = p.h.aio_get_direction()
            ev = (select.POLLIN if d & nbd.AIO_DIRECTION_READ else 0) | (
                select.POLLOUT if d & nbd.AIO_DIRECTION_WRITE else 0
            )
            poller.register(fd, ev)
            byfd[fd] = p
        for fd, ev in poller.poll(-1):
            p = byfd[fd]
            if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                p.h.aio_notify_read()
            elif ev & select.POLLOUT:
                p.h.aio_notify_write()
        for fd in byfd:
            poller.unregister(fd)
        byfd.clear()
    for p in parts:
        if p.error:
            return p.error
    return None


def main():
    conns, depth = int(sys.argv[1]), int(sys.argv[2])
    exports = list(zip(sys.argv[3::2], sys.argv[4::2]))
    if conns < 1 or depth < 1 or not exports or len(sys.argv) % 2 != 1:
        sys.exit(__doc__)
    jobs, total = [], 0
    per = max(1, conns // len(exports))
    for uri, image in exports:
        with open(image, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            view = memoryview(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)) if size else memoryview(b"")
        total += size
        blocks = size // BLOCK
        for k in range(per):
            a, b = blocks * k // per * BLOCK, blocks * (k + 1) // per * BLOCK
            if k == per - 1:
                b = size
            if b > a:
                jobs.append((uri, view, a, b))
    try:
        parts = [Part(*job, depth) for job in jobs]
    except nbd.Error as e:
        sys.exit(f"connecting: {e}")
    t0 = time.monotonic()
    try:
        if conns == 1:  # one connection at a time
            err = next((e for e in (run([p]) for p in parts) if e), None)
        else:
            err = run(parts)
    except nbd.Error as e:
        err = f"reading: {e}"
    dt = time.monotonic() - t0
    if err:
        print(err, file=sys.stderr)
        sys.exit(1)
    for p in parts:
        p.h.shutdown()
    print(total, f"{dt:.4f}")


if __name__ == "__main__":
    main()
