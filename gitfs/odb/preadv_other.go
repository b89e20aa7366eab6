//go:build !linux

package odb

import (
	"io"
	"os"
)

// preadvFull fills bufs, in order, from f at off; a file that ends first
// is io.ErrUnexpectedEOF.
func preadvFull(f *os.File, bufs [][]byte, off int64) error {
	for _, b := range bufs {
		n, err := f.ReadAt(b, off)
		if n < len(b) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		off += int64(n)
	}
	return nil
}
