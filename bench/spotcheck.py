#!/usr/bin/python3
"""Compare random reads from an NBD export with the same ranges of a file.

A benchmark of a server that returns wrong bytes measures nothing, so
bench/run checks the servers it measured: COUNT reads at seeded random
offsets (4 KiB aligned ones like fio's, and odd offsets and lengths), each
compared with the built image. Exits 1 naming the first differing range.

usage: spotcheck.py URI IMAGE [COUNT] [SEED]
Needs python3-libnbd (run with Debian's /usr/bin/python3).
"""

import random
import sys

import nbd

BLOCK = 4096
MAX_ODD = 256 << 10  # longest odd-sized read


def main():
    uri, image = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    h = nbd.NBD()
    h.connect_uri(uri)
    size = h.get_size()
    with open(image, "rb") as f:
        f.seek(0, 2)
        if f.tell() != size:
            sys.exit(f"spotcheck: export is {size} bytes, {image} is {f.tell()}")
        for i in range(count):
            if i % 2 == 0 and size >= BLOCK:
                off = rng.randrange(size // BLOCK) * BLOCK
                n = BLOCK
            else:
                off = rng.randrange(size)
                n = rng.randrange(1, min(MAX_ODD, size - off) + 1)
            got = h.pread(n, off)
            f.seek(off)
            want = f.read(n)
            if got != want:
                sys.exit(f"spotcheck: {uri}: {n} bytes at offset {off} differ from {image}")
    h.shutdown()


if __name__ == "__main__":
    main()
