//go:build !amd64 && !arm64

package secrets

// clearVectorRegisters does nothing where gitblk has no assembly for it:
// there, copies of the registers may outlive Release.
func clearVectorRegisters() {}
