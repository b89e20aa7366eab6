//go:build !cgo || purego

package odb

// newZlibReader inflates with compress/zlib (see zlib.go).
var newZlibReader = newGoZlib

// inflateWhole inflates with compress/zlib (see zlib.go).
var inflateWhole = inflateGo
