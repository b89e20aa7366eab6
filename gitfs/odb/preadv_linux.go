//go:build linux

package odb

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// preadvFull fills bufs, in order, from f at off with preadv calls; a
// file that ends first is io.ErrUnexpectedEOF.
func preadvFull(f *os.File, bufs [][]byte, off int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for len(bufs) > 0 {
		var n int
		var perr error
		if err := rc.Read(func(fd uintptr) bool {
			n, perr = unix.Preadv(int(fd), bufs, off)
			return perr != unix.EAGAIN
		}); err != nil {
			return err
		}
		if perr != nil {
			return perr
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		off += int64(n)
		for n > 0 {
			k := min(n, len(bufs[0]))
			bufs[0] = bufs[0][k:]
			n -= k
			if len(bufs[0]) == 0 {
				bufs = bufs[1:]
			}
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return nil
}
