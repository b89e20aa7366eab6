//go:build !linux || !(amd64 || arm64)

package secrets

// holdSignals does nothing where gitblk does not block signals: there a
// signal taken while plaintext is in the registers may leave a copy of
// them on a signal stack.
func holdSignals() (release func()) { return func() {} }
