package secrets

// withPlaintextInRegisters runs f, which moves plaintext through the
// CPU's vector registers (ChaCha20 and memmove use them), so that no copy
// of those registers is left in memory: a signal taken while f runs, or
// soon after, makes the kernel save every register in a frame on the
// thread's signal stack (and asynchronous preemption saves them again on
// the goroutine's stack), where they outlive Release, freed but never
// zeroed. Where signals can be held back (holdSignals), f runs on its own
// thread with the asynchronous signals blocked, and the vector registers
// are cleared before they are let through; elsewhere the registers are
// cleared after f, which narrows the window but cannot close it.
func withPlaintextInRegisters(f func()) {
	release := holdSignals()
	defer release()
	defer clearVectorRegisters()
	f()
}
