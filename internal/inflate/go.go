package inflate

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
)

// goReader is compress/zlib reading src through a buffer of a chosen size.
type goReader struct {
	br *bufio.Reader
	zr io.ReadCloser
}

func newGoReader(src io.Reader, bufSize int) (Reader, error) {
	z := &goReader{br: bufio.NewReaderSize(src, max(bufSize, minBufSize))}
	zr, err := zlib.NewReader(z.br)
	if err != nil {
		return nil, goErr(err)
	}
	z.zr = zr
	return z, nil
}

// minBufSize is the smallest input buffer of a Reader.
const minBufSize = 64

func (z *goReader) Read(p []byte) (int, error) {
	n, err := z.zr.Read(p)
	return n, goErr(err)
}

func (z *goReader) Reset(src io.Reader) error {
	z.br.Reset(src)
	return goErr(z.zr.(zlib.Resetter).Reset(z.br, nil))
}

func (z *goReader) Close() error { return nil }

// goErr maps compress/zlib's errors on ErrData.
func goErr(err error) error {
	var ce flate.CorruptInputError
	switch {
	case err == nil, err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
		return err
	case errors.Is(err, zlib.ErrHeader), errors.Is(err, zlib.ErrChecksum), errors.Is(err, zlib.ErrDictionary):
		return errors.Join(ErrData, err)
	case errors.As(err, &ce):
		return errors.Join(ErrData, err)
	}
	return err
}

// wholeGo is Whole with compress/zlib.
func wholeGo(dst, src []byte) (int, error) {
	br := bytes.NewReader(src)
	zr, err := zlib.NewReader(br)
	if err != nil {
		return 0, goErr(err)
	}
	if _, err := io.ReadFull(zr, dst); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w: damaged or cut short: %w", ErrData, err)
		}
		return 0, goErr(err)
	}
	// The stream must end here, with its checksum.
	var one [1]byte
	if n, err := zr.Read(one[:]); n > 0 || err != io.EOF {
		if n > 0 {
			return 0, fmt.Errorf("%w: inflates to more than %d bytes", ErrData, len(dst))
		}
		return 0, fmt.Errorf("%w: damaged or cut short: %w", ErrData, err)
	}
	return len(src) - br.Len(), nil
}
