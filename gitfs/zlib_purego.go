//go:build !cgo || purego

package gitfs

// newZlibReader inflates with compress/zlib (see zlib.go).
var newZlibReader = newGoZlib
