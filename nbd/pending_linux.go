package nbd

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bytesWaiting reports whether the socket under c has bytes the server
// has not read yet, without reading them (recv(2) with MSG_PEEK and
// MSG_DONTWAIT) and whatever c's deadline says.
func bytesWaiting(c any) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, _ = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	return n > 0
}
