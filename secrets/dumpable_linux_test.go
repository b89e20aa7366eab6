package secrets

import (
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
	"golang.org/x/sys/unix"
)

// Loading an identity makes the process non-dumpable: no core dump holds
// the key or plaintext, and no other process of the user can trace it.
func TestLoadIdentityProtectsProcess(t *testing.T) {
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(p, []byte(x.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(p); err != nil {
		t.Fatal(err)
	}
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d != 0 {
		t.Errorf("PR_GET_DUMPABLE = %d after LoadIdentity, want 0", d)
	}
}
