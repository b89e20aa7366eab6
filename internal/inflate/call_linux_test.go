//go:build linux && (amd64 || arm64)

package inflate

import (
	"testing"

	"github.com/ebitengine/purego"
)

// callBench is the cost of one C call through cgo (cgoref_test.go sets it
// with -tags cgoref).
var callBench func() uintptr

// BenchmarkCall is the cost of one C call that does nothing (zlibVersion)
// through purego, and through cgo for reference.
func BenchmarkCall(b *testing.B) {
	l := systemLibs()
	if l.zlib == nil {
		b.Fatal(l.zlibErr)
	}
	b.Run("purego", func(b *testing.B) {
		for b.Loop() {
			purego.SyscallN(l.zlib.zlibVersion)
		}
	})
	if callBench != nil {
		b.Run("cgo", func(b *testing.B) {
			for b.Loop() {
				callBench()
			}
		})
	}
}
