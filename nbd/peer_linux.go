package nbd

import (
	"net"

	"golang.org/x/sys/unix"
)

// unixCred reads SO_PEERCRED of a unix socket (socket(7)); nil if it fails.
func unixCred(c *net.UnixConn) *Cred {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var uc *unix.Ucred
	var uerr error
	if err := rc.Control(func(fd uintptr) {
		uc, uerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || uerr != nil || uc == nil {
		return nil
	}
	return &Cred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}
}
