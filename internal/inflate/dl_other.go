//go:build !(linux && (amd64 || arm64))

package inflate

import (
	"fmt"
	"runtime"
)

// On other systems the C libraries are not tried: the z_stream layout
// (dl_zlib.go) and library names are those of 64-bit Linux.

type zlibLib struct{}

func (*zlibLib) inflater() *Inflater { return goInflater }

type libdeflateLib struct{}

func (*libdeflateLib) inflater(*zlibLib) *Inflater { return goInflater }

func systemLibs() libs {
	err := fmt.Errorf("inflate: C libraries are not loaded on %s/%s", runtime.GOOS, runtime.GOARCH)
	return libs{zlibErr: err, libdeflateErr: err}
}
