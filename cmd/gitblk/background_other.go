//go:build !linux

package main

// runInBackground runs f on a goroutine of its own (thread priorities
// are Linux's here).
func runInBackground(f func()) { go f() }
