#!/usr/bin/env python3
"""Write a git fast-import stream of one commit of many small files.

DIRS top directories d000.. of SUBS subdirectories s0.. of FILES files
f00.txt.. each (600 x 10 x 50 = 300,000 by default, as in issue 12); file
number N holds the 25 bytes "file NNNNNNN of the tree\\n", so every blob is
distinct. Fixed identity and date: the same arguments always give the same
commit id.

usage: genmany.py [DIRS [SUBS [FILES]]]
"""

import sys

IDENT = b"Bench <bench@example.invalid> 1704067200 +0000"


def main():
    dirs, subs, files = (int(a) for a in (sys.argv[1:] + ["600", "10", "50"][len(sys.argv) - 1 :])[:3])
    out = sys.stdout.buffer
    msg = b"%d files in %d directories of %d subdirectories\n" % (dirs * subs * files, dirs, subs)
    out.write(b"commit refs/heads/main\ncommitter %s\ndata %d\n%s" % (IDENT, len(msg), msg))
    n = 0
    w = len(str(files - 1))
    for d in range(dirs):
        for s in range(subs):
            chunk = []
            for f in range(files):
                body = b"file %07d of the tree\n" % n
                chunk.append(b"M 100644 inline d%03d/s%d/f%0*d.txt\ndata %d\n%s\n" % (d, s, w, f, len(body), body))
                n += 1
            out.write(b"".join(chunk))
    out.write(b"\ndone\n")


if __name__ == "__main__":
    main()
