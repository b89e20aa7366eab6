package secrets

// clearVectorRegisters zeroes V0-V31.
//
//go:noescape
func clearVectorRegisters()
