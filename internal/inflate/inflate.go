package inflate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// ErrData marks a damaged zlib stream (bad header, data or checksum, or a
// whole object that inflates to another size than its buffer's).
var ErrData = errors.New("inflate: corrupt zlib data")

// EnvVar is the environment variable that forces an inflater (see the
// package doc).
const EnvVar = "GITBLK_INFLATE"

// Kinds accepted by [Load] and in [EnvVar].
const (
	KindGo         = "go"
	KindZlib       = "zlib"
	KindLibdeflate = "libdeflate"
)

// Reader inflates one zlib stream read from its source. Reset starts over
// on another stream, reusing the reader's buffers; Close releases the
// reader (not its source). After the stream's end Read returns io.EOF; a
// stream that ends early is io.ErrUnexpectedEOF; a damaged one is an error
// wrapping ErrData. A Reader is not safe for concurrent use.
type Reader interface {
	io.ReadCloser
	Reset(src io.Reader) error
}

// An Inflater is one implementation. It is safe for concurrent use.
type Inflater struct {
	name      string
	newReader func(src io.Reader, bufSize int) (Reader, error)
	whole     func(dst, src []byte) (int, error)
}

// Name says which libraries the inflater uses, e.g. "zlib (dlopen)".
func (f *Inflater) Name() string { return f.name }

// NewReader returns a Reader of the zlib stream in src, which it reads in
// pieces of bufSize bytes (at least 64), so it may read up to a buffer
// past the stream's end; what follows the stream is never taken for it.
func (f *Inflater) NewReader(src io.Reader, bufSize int) (Reader, error) {
	return f.newReader(src, bufSize)
}

// Whole inflates the zlib stream at the start of src into dst, which must
// be exactly its inflated size, and says how many bytes of src the stream
// took; bytes after the stream are left alone. A stream that is damaged,
// cut short by the end of src, or of another size is an error wrapping
// ErrData (or io.ErrUnexpectedEOF for an empty src). It is the fast path
// for objects whose inflated size is known and small.
func (f *Inflater) Whole(dst, src []byte) (int, error) {
	if len(src) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	return f.whole(dst, src)
}

// goInflater is compress/zlib, always there.
var goInflater = &Inflater{name: "go compress/zlib", newReader: newGoReader, whole: wholeGo}

// Go returns the compress/zlib inflater.
func Go() *Inflater { return goInflater }

// Load returns the inflater of one kind (KindGo, KindZlib or
// KindLibdeflate, as in the package doc), or an error when its library
// does not load: unlike Default, it does not fall back. (KindLibdeflate
// streams with zlib when zlib loads, else with compress/zlib.)
func Load(kind string) (*Inflater, error) {
	switch kind {
	case KindGo:
		return goInflater, nil
	case KindZlib:
		l := systemLibs()
		if l.zlib == nil {
			return nil, l.zlibErr
		}
		return l.zlib.inflater(), nil
	case KindLibdeflate:
		l := systemLibs()
		if l.libdeflate == nil {
			return nil, l.libdeflateErr
		}
		return l.libdeflate.inflater(l.zlib), nil
	}
	return nil, fmt.Errorf("inflate: unknown kind %q (want %s, %s or %s)", kind, KindGo, KindZlib, KindLibdeflate)
}

var (
	defaultOnce sync.Once
	defaultInf  *Inflater
	defaultErr  error
)

// Default returns the inflater in use: the one GITBLK_INFLATE names, or
// the best that loads (see the package doc). It is chosen once.
func Default() *Inflater {
	defaultOnce.Do(func() {
		defaultInf, defaultErr = choose(os.Getenv(EnvVar), systemLibs())
	})
	return defaultInf
}

// DefaultError says why Default is not the inflater GITBLK_INFLATE asks
// for, or (when it is unset) not libdeflate with zlib: the libraries that
// did not load, or an unknown GITBLK_INFLATE. It is nil when nothing was
// missed.
func DefaultError() error {
	Default()
	return defaultErr
}

// Name is the name of the inflater in use (Default), for the log.
func Name() string { return Default().Name() }

// NewReader is Default().NewReader.
func NewReader(src io.Reader, bufSize int) (Reader, error) {
	return Default().NewReader(src, bufSize)
}

// Whole is Default().Whole.
func Whole(dst, src []byte) (int, error) { return Default().Whole(dst, src) }

// libs are the C libraries as loaded: each either there or its error.
type libs struct {
	zlib          *zlibLib
	zlibErr       error
	libdeflate    *libdeflateLib
	libdeflateErr error
}

// choose picks the inflater for want (an EnvVar value; "" is the best
// there is). It always returns one; the error says what was missed.
func choose(want string, l libs) (*Inflater, error) {
	var note error
	switch want {
	case KindGo:
		return goInflater, nil
	case KindZlib:
		if l.zlib != nil {
			return l.zlib.inflater(), nil
		}
		return goInflater, fmt.Errorf("inflate: %s=%s: %w", EnvVar, want, l.zlibErr)
	case "", KindLibdeflate:
	default:
		note = fmt.Errorf("inflate: %s=%q is none of %s, %s, %s", EnvVar, want, KindGo, KindZlib, KindLibdeflate)
	}
	switch {
	case l.libdeflate != nil && l.zlib != nil:
		return l.libdeflate.inflater(l.zlib), note
	case l.libdeflate != nil:
		return l.libdeflate.inflater(nil), errors.Join(note, l.zlibErr)
	case l.zlib != nil:
		return l.zlib.inflater(), errors.Join(note, l.libdeflateErr)
	}
	return goInflater, errors.Join(note, l.libdeflateErr, l.zlibErr)
}
