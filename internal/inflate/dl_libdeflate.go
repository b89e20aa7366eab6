//go:build linux && (amd64 || arm64)

package inflate

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
)

// libdeflate's enum libdeflate_result (libdeflate.h).
const (
	ldSuccess           = 0
	ldBadData           = 1
	ldShortOutput       = 2
	ldInsufficientSpace = 3
)

// libdeflateLib is the system's libdeflate, loaded.
type libdeflateLib struct {
	c *libc
	// Function addresses.
	alloc, zlibDecompressEx, free uintptr
	// Idle decompressors: one is not safe for concurrent use.
	idle chan *decompressor
}

// decompressor is a libdeflate decompressor and, in C memory, the two
// size_t results of libdeflate_zlib_decompress_ex.
type decompressor struct {
	d     uintptr
	sizes *[2]uintptr // actual_in_nbytes, actual_out_nbytes
}

func loadLibdeflate(c *libc, name string) (*libdeflateLib, error) {
	h, err := dlopen(name)
	if err != nil {
		return nil, err
	}
	l := &libdeflateLib{c: c, idle: make(chan *decompressor, PoolMax)}
	err = dlsyms(h, sym{"libdeflate_alloc_decompressor", &l.alloc},
		sym{"libdeflate_zlib_decompress_ex", &l.zlibDecompressEx}, sym{"libdeflate_free_decompressor", &l.free})
	if err == nil {
		err = selfTest(l.inflater(nil))
	}
	if err != nil {
		_ = purego.Dlclose(h)
		return nil, fmt.Errorf("inflate: %s: %w", name, err)
	}
	return l, nil
}

// inflater is libdeflate for whole objects and z (or compress/zlib, if z
// is nil) for streams.
func (l *libdeflateLib) inflater(z *zlibLib) *Inflater {
	if z == nil {
		return &Inflater{name: "libdeflate+go compress/zlib (dlopen)", newReader: newGoReader, whole: l.whole}
	}
	return &Inflater{name: "libdeflate+zlib (dlopen)", newReader: z.newReader, whole: l.whole}
}

// get returns an idle decompressor or a new one.
func (l *libdeflateLib) get() (*decompressor, error) {
	select {
	case d := <-l.idle:
		return d, nil
	default:
	}
	p := l.c.calloc(2, unsafe.Sizeof(uintptr(0)))
	if p == nil {
		return nil, errors.New("inflate: libdeflate: out of memory")
	}
	d, _, _ := purego.SyscallN(l.alloc)
	if d == 0 {
		l.c.free(p)
		return nil, errors.New("inflate: libdeflate: cannot allocate a decompressor")
	}
	return &decompressor{d: d, sizes: (*[2]uintptr)(p)}, nil
}

// put keeps d for reuse, or frees it.
func (l *libdeflateLib) put(d *decompressor) {
	select {
	case l.idle <- d:
	default:
		purego.SyscallN(l.free, d.d)
		l.c.free(unsafe.Pointer(d.sizes))
	}
}

// whole is Inflater.Whole with libdeflate. The Go buffers are C's only
// during the call (purego.SyscallN's go:uintptrescapes keeps them on the
// heap and alive until it returns).
// errCutShort is made once: callers try streams they may have read only
// part of (odb inflates a pack entry from its first read, and reads the
// rest only when that fails), so this error is common and cheap.
var errCutShort = fmt.Errorf("%w: damaged or cut short", ErrData)

func (l *libdeflateLib) whole(dst, src []byte) (int, error) {
	d, err := l.get()
	if err != nil {
		return 0, err
	}
	defer l.put(d)
	r, _, _ := purego.SyscallN(l.zlibDecompressEx, d.d,
		uintptr(unsafe.Pointer(unsafe.SliceData(src))), uintptr(len(src)),
		uintptr(unsafe.Pointer(unsafe.SliceData(dst))), uintptr(len(dst)),
		uintptr(unsafe.Pointer(&d.sizes[0])), uintptr(unsafe.Pointer(&d.sizes[1])))
	inUsed, outUsed := int(d.sizes[0]), int(d.sizes[1])
	switch int32(r) {
	case ldSuccess:
		if outUsed != len(dst) {
			return inUsed, fmt.Errorf("%w: inflates to %d bytes, not %d", ErrData, outUsed, len(dst))
		}
		return inUsed, nil
	case ldInsufficientSpace:
		return 0, fmt.Errorf("%w: inflates to more than %d bytes", ErrData, len(dst))
	case ldBadData, ldShortOutput:
		return 0, errCutShort
	}
	return 0, fmt.Errorf("inflate: libdeflate: failed (%d)", int32(r))
}
