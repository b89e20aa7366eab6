//go:build cgo && cgoref

package inflate

import (
	"io"

	"github.com/gitblk/gitblk/internal/inflate/internal/cgoref"
)

// The former cgo inflater, for the benchmark's reference.
func init() {
	extraInflaters["cgo"] = &Inflater{
		name: "cgo libdeflate+zlib",
		newReader: func(src io.Reader, bufSize int) (Reader, error) {
			return cgoref.NewReader(src, bufSize)
		},
		whole: cgoref.Whole,
	}
	callBench = cgoref.Version
}
