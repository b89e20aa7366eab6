// Package notify tells the service manager how gitblk is doing, with the
// sd_notify protocol of systemd (sd_notify(3), "Notes"): one datagram of
// newline-separated VARIABLE=value assignments to the unix socket named in
// $NOTIFY_SOCKET. A name starting with "@" is in the abstract namespace.
// No library and no C: a datagram is all it takes.
//
// Without $NOTIFY_SOCKET (not started by systemd, or Type= is not notify)
// every call does nothing and reports false.
package notify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// sendTimeout bounds a write to the notification socket: the manager reads
// it at once, and a wedged one must not stall gitblk.
const sendTimeout = 2 * time.Second

// Socket is the environment variable that names the socket.
const Socket = "NOTIFY_SOCKET"

// Send sends state, newline-separated assignments such as "READY=1" or
// "STATUS=serving", to $NOTIFY_SOCKET. It reports whether a notification
// was sent; without the variable it does nothing and returns false, nil.
func Send(state string) (sent bool, err error) {
	name := os.Getenv(Socket)
	if name == "" {
		return false, nil
	}
	return SendTo(name, state)
}

// SendTo sends state to the socket name (a path, or "@" + an abstract
// name), as Send does with $NOTIFY_SOCKET.
func SendTo(name, state string) (bool, error) {
	if name[0] != '/' && name[0] != '@' {
		// systemd also knows vsock: addresses, for virtual machines.
		return false, fmt.Errorf("notify: unsupported %s %q", Socket, name)
	}
	if state == "" {
		return false, errors.New("notify: empty state")
	}
	// net's unix addresses put a leading "@" in the abstract namespace,
	// as $NOTIFY_SOCKET does.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("notify: %w", err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(sendTimeout))
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("notify: %w", err)
	}
	return true, nil
}

// Ready says the service is up: its listeners accept and its exports
// resolve. status, if not empty, is sent with it as STATUS=.
func Ready(status string) (bool, error) {
	s := "READY=1"
	if status != "" {
		s += "\nSTATUS=" + oneLine(status)
	}
	return Send(s)
}

// Status sets the one-line status text systemctl status shows.
func Status(status string) (bool, error) {
	return Send("STATUS=" + oneLine(status))
}

// Reloading says the service is reloading its configuration; Ready says
// when it is done. systemd wants the time of the reload with it, as
// CLOCK_MONOTONIC microseconds (MONOTONIC_USEC=, sd_notify(3)).
func Reloading() (bool, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return Send("RELOADING=1")
	}
	return Send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000))
}

// Stopping says the service is shutting down.
func Stopping() (bool, error) {
	return Send("STOPPING=1")
}

// oneLine keeps a status on one line: a newline would start an assignment.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ")
}
