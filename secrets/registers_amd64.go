package secrets

import "golang.org/x/sys/cpu"

// useAVX selects VZEROALL, which clears the whole of every vector
// register, over clearing only the SSE halves.
var useAVX = cpu.X86.HasAVX

// clearVectorRegisters zeroes X0-X15 (all of Y0-Y15, Z0-Z15 with AVX).
//
//go:noescape
func clearVectorRegisters()
