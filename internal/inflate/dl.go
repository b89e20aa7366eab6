//go:build linux && (amd64 || arm64)

package inflate

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The libraries loaded at run time; tests point these at names that do not
// exist to see the fallback.
var (
	libcName       = "libc.so.6"
	zlibName       = "libz.so.1"
	libdeflateName = "libdeflate.so.0"
)

var (
	sysOnce sync.Once
	sysLibs libs
)

// systemLibs loads the system's libraries, once.
func systemLibs() libs {
	sysOnce.Do(func() { sysLibs = loadLibs(libcName, zlibName, libdeflateName) })
	return sysLibs
}

// loadLibs loads libc (for memory that C keeps between calls), zlib and
// libdeflate by their sonames.
func loadLibs(libcName, zlibName, libdeflateName string) libs {
	var l libs
	c, err := loadLibc(libcName)
	if err != nil {
		l.zlibErr, l.libdeflateErr = err, err
		return l
	}
	l.zlib, l.zlibErr = loadZlib(c, zlibName)
	l.libdeflate, l.libdeflateErr = loadLibdeflate(c, libdeflateName)
	return l
}

// libc allocates the memory that C holds across calls (a z_stream, whose
// address zlib checks on every call, must never move, and Go memory may not
// be kept by C after a call returns).
type libc struct {
	calloc func(n, size uintptr) unsafe.Pointer
	free   func(p unsafe.Pointer)
}

func loadLibc(name string) (*libc, error) {
	h, err := dlopen(name)
	if err != nil {
		return nil, err
	}
	var c libc
	if err := dlsyms(h, sym{"calloc", &c.calloc}, sym{"free", &c.free}); err != nil {
		_ = purego.Dlclose(h)
		return nil, fmt.Errorf("inflate: %s: %w", name, err)
	}
	return &c, nil
}

// dlopen loads library name with its symbols bound now and kept local.
func dlopen(name string) (uintptr, error) {
	h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return 0, fmt.Errorf("inflate: loading %s: %w", name, err)
	}
	return h, nil
}

// sym is a symbol to find and where to put it: a *uintptr gets its
// address, for purego.SyscallN on hot paths; a pointer to a func variable
// gets a Go function calling it (purego.RegisterFunc).
type sym struct {
	name string
	to   any
}

// dlsyms finds each symbol in library h.
func dlsyms(h uintptr, syms ...sym) error {
	for _, s := range syms {
		addr, err := purego.Dlsym(h, s.name)
		if err != nil {
			return err
		}
		if u, ok := s.to.(*uintptr); ok {
			*u = addr
		} else {
			purego.RegisterFunc(s.to, addr)
		}
	}
	return nil
}

// ptr is the address of b's first byte, or 0 for an empty b, for C.
func ptr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
