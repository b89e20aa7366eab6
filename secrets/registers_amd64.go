package secrets

import "golang.org/x/sys/cpu"

// useAVX selects VZEROALL, which clears the whole of every vector
// register, over clearing only the SSE halves.
var useAVX = cpu.X86.HasAVX

// clearVectorRegisters zeroes X0-X15; with AVX, VZEROALL clears them
// whole (Y0-Y15, and Z0-Z15 where AVX-512 exists).
//
//go:noescape
func clearVectorRegisters()
