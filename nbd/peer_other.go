//go:build !linux

package nbd

import "net"

// unixCred is nil where SO_PEERCRED does not exist.
func unixCred(*net.UnixConn) *Cred { return nil }
