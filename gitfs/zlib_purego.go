//go:build !cgo || purego

package gitfs

// newZlibReader inflates with compress/zlib (see zlib.go).
var newZlibReader = newGoZlib

// inflateWhole inflates with compress/zlib (see zlib.go).
var inflateWhole = inflateGo
