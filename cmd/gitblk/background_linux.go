package main

import (
	"runtime"
	"syscall"
)

// backgroundNice is the nice value of a background goroutine's thread.
const backgroundNice = 19

// runInBackground runs f on a thread of its own at the lowest CPU
// priority, so that work no client waits for (the prefetch of a small
// site) uses idle cores only, not the ones a client's first requests,
// or its process start, need. The thread ends with f: Go does not reuse
// a thread a goroutine exits locked to. Failing to lower the priority
// (a seccomp filter, say) only leaves f at the usual one.
func runInBackground(f func()) {
	go func() {
		runtime.LockOSThread()
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), backgroundNice)
		f()
	}()
}
