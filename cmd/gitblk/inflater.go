package main

import (
	"log/slog"

	"github.com/gitblk/gitblk/internal/inflate"
)

// inflaterAttr names, for the start-up log, the inflater the server uses
// (internal/inflate: libdeflate and zlib loaded at run time, or Go's
// compress/zlib) and, when it is not the one asked for or the best one,
// why: a library that did not load, or a bad GITBLK_INFLATE. A first
// read's speed depends on it, so an operator should see it.
func inflaterAttr() slog.Attr {
	v := inflate.Name()
	if err := inflate.DefaultError(); err != nil {
		v += " (" + err.Error() + ")"
	}
	return slog.String("inflater", v)
}

// preloadInflater loads the inflater's C libraries on a goroutine of its
// own: dlopen takes about a millisecond, which then runs beside parsing
// the command line and opening the repository instead of delaying the
// first object read (a small site's start is a few milliseconds).
func preloadInflater() { go inflate.Default() }
