//go:build !linux

package secrets

// protectProcess does nothing where prctl(2) does not exist.
func protectProcess() {}
