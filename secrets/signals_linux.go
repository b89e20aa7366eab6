//go:build amd64 || arm64

package secrets

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// heldSignals are the asynchronous signals: every signal but those a
// fault raises, which the runtime turns into a panic or a crash report and
// which, blocked, would kill the process instead. Bit n-1 is signal n.
var heldSignals = func() unix.Sigset_t {
	var s unix.Sigset_t
	s.Val[0] = ^uint64(0)
	for _, sig := range []unix.Signal{unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGTRAP, unix.SIGSYS} {
		s.Val[0] &^= 1 << (uint(sig) - 1)
	}
	return s
}()

// holdSignals pins the calling goroutine to its thread and blocks the
// asynchronous signals there (a signal sent to the process goes to another
// thread; one sent to this thread, such as the runtime's preemption
// request, waits); release unblocks them, delivering those that waited,
// and unpins. If the mask cannot be changed, only the pinning is done.
func holdSignals() (release func()) {
	runtime.LockOSThread()
	var old unix.Sigset_t
	if unix.PthreadSigmask(unix.SIG_BLOCK, &heldSignals, &old) != nil {
		return runtime.UnlockOSThread
	}
	return func() {
		_ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
		runtime.UnlockOSThread()
	}
}
