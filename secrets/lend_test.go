package secrets

import (
	"testing"

	"github.com/gitblk/gitblk/imager"
)

// TestDecryptedDoesNotLend: a decrypting reader must not be an
// imager.BlobLender. A lent piece is sent after the read returns, from
// where it lies: plaintext would leave the locked memory by another path
// than the read's own bounded buffer, and Release could zero it while a
// reply still refers to it. Without a lender, layouts over a Decrypted
// copy every byte as before.
func TestDecryptedDoesNotLend(t *testing.T) {
	var r imager.BlobReader = &Decrypted{}
	if _, ok := r.(imager.BlobLender); ok {
		t.Fatal("*Decrypted is an imager.BlobLender")
	}
}
