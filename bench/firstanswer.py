#!/usr/bin/python3 -I
"""firstanswer.py SOCKET EXPORT TIMEOUT: time a server's first answer.

bench/run starts this client before the server it times, the way a guest's
NBD client (dom0's nbd-client, QEMU) is already there when a server comes
up: its own start-up is then not counted against the server. It prints
"waiting" once libnbd is loaded; the caller then starts the server. It looks
for SOCKET every half millisecond, connects once it exists and negotiates
EXPORT (NBD_OPT_GO, which a gitblk server answers once the export's image is
laid out); when that succeeds it prints the wall clock in nanoseconds and the
export's size, on one line, and exits 0. After TIMEOUT seconds without an
answer it prints "timeout" and exits 1.
"""

import os
import sys
import time

import nbd


def main():
    sock, export, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    print("waiting", flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(sock):
            h = nbd.NBD()
            h.set_export_name(export)
            try:
                h.connect_unix(sock)
            except nbd.Error:
                del h  # not listening yet, or refused: try again
            else:
                t = time.time_ns()
                print(t, h.get_size(), flush=True)
                h.shutdown()
                return 0
        time.sleep(0.0005)
    print("timeout", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
