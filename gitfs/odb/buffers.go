package odb

import "sync"

var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, spillChunk)
	return &b
}}

// bufPools hold byte buffers by power-of-two size, from 4 KiB to 4 MiB,
// for compressed input and delta data.
var bufPools [11]sync.Pool

const minBufShift = 12

// getBuf returns a buffer of n bytes, pooled when n is at most 4 MiB.
func getBuf(n int) *[]byte {
	class := 0
	for class < len(bufPools) && 1<<(class+minBufShift) < n {
		class++
	}
	if class == len(bufPools) {
		b := make([]byte, n)
		return &b
	}
	if bp, ok := bufPools[class].Get().(*[]byte); ok {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, 1<<(class+minBufShift))
	return &b
}

// putBuf gives a buffer from getBuf back.
func putBuf(bp *[]byte) {
	c := cap(*bp)
	for class := range bufPools {
		if c == 1<<(class+minBufShift) {
			bufPools[class].Put(bp)
			return
		}
	}
}

// blobBytes returns a slice of n bytes for a blob's inflated data. It is
// a plain make: the runtime does not clear memory fresh from the kernel
// (already zero), which is what a first read's blobs mostly get, while
// bytes.Buffer.Grow, used before, always cleared it (append of a make),
// a second pass over every fresh page of a first read.
func blobBytes(n int64) []byte {
	if n <= 0 {
		return []byte{}
	}
	return make([]byte, n)
}
