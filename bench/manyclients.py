#!/usr/bin/python3
"""Read NBD exports through many connections at once and check every byte.

Each export (URI, IMAGE) is cut into CONNS/len(exports) contiguous parts of
whole 4 KiB blocks; each part is read by its own connection, all at the same
time (one thread each), with DEPTH requests of up to 256 KiB in flight, and
every reply is compared with the same range of IMAGE. With CONNS 1 the
exports are read one after the other over one connection each. Prints the
bytes read and the seconds taken; exits 1 naming the first differing range.

usage: manyclients.py CONNS DEPTH URI IMAGE [URI IMAGE ...]
Needs python3-libnbd (run with Debian's /usr/bin/python3).
"""

import os
import sys
import threading
import time

import nbd

CHUNK = 256 << 10
BLOCK = 4096


def read_part(uri, fd, start, end, depth, errors):
    try:
        h = nbd.NBD()
        h.connect_uri(uri)
        inflight = {}
        off = start
        while off < end or inflight:
            while off < end and len(inflight) < depth:
                n = min(CHUNK, end - off)
                buf = nbd.Buffer(n)
                inflight[h.aio_pread(buf, off)] = (off, buf)
                off += n
            h.poll(-1)
            for cookie in [c for c in inflight if h.aio_command_completed(c)]:
                o, buf = inflight.pop(cookie)
                got = buf.to_bytearray()
                if got != os.pread(fd, len(got), o):
                    raise ValueError(f"{uri}: bytes {o}..{o + len(got)} differ from the image")
        h.shutdown()
    except Exception as e:  # reported by the main thread
        errors.append(f"{uri} [{start}, {end}): {e}")


def main():
    conns, depth = int(sys.argv[1]), int(sys.argv[2])
    exports = list(zip(sys.argv[3::2], sys.argv[4::2]))
    if conns < 1 or depth < 1 or not exports or len(sys.argv) % 2 != 1:
        sys.exit(__doc__)
    jobs, total = [], 0
    per = max(1, conns // len(exports))
    for uri, image in exports:
        fd = os.open(image, os.O_RDONLY)
        size = os.fstat(fd).st_size
        total += size
        blocks = size // BLOCK
        for k in range(per):
            a, b = blocks * k // per * BLOCK, blocks * (k + 1) // per * BLOCK
            if k == per - 1:
                b = size
            if b > a:
                jobs.append((uri, fd, a, b))
    errors = []
    t0 = time.monotonic()
    if conns == 1:
        for job in jobs:
            read_part(*job, depth, errors)
    else:
        threads = [threading.Thread(target=read_part, args=(*job, depth, errors)) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    dt = time.monotonic() - t0
    if errors:
        print(errors[0], file=sys.stderr)
        sys.exit(1)
    print(total, f"{dt:.4f}")


if __name__ == "__main__":
    main()
