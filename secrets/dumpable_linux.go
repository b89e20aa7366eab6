package secrets

import (
	"sync"

	"golang.org/x/sys/unix"
)

var protectOnce sync.Once

// protectProcess makes the process non-dumpable (prctl PR_SET_DUMPABLE 0,
// proc(5) and ptrace(2)): no core dump is written, and processes of the
// same user cannot ptrace it or read /proc/PID/mem. A process that has
// loaded an identity holds the key, and plaintext in the buffers it serves
// from, anywhere in its memory, not only in the locked mapping.
func protectProcess() {
	protectOnce.Do(func() { _ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0) })
}
