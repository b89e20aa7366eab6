package secrets

import (
	"bytes"
	"io"
	"testing"

	"filippo.io/age"

	"github.com/gitblk/gitblk/imager"
)

// memBlobs serves blobs from memory.
type memBlobs map[imager.BlobID][]byte

func (m memBlobs) ReadBlob(id imager.BlobID, p []byte, off int64) (int, error) {
	b := m[id]
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzDecrypt feeds Decrypt ciphertexts derived from a real one: it must
// never panic, and whenever it succeeds the plaintext is the original
// (age authenticates the header and every chunk), never other bytes.
func FuzzDecrypt(f *testing.F) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	plain := bytes.Repeat([]byte("fuzzed secret "), 5000) // two STREAM chunks
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, id.Recipient())
	if err != nil {
		f.Fatal(err)
	}
	w.Write(plain)
	w.Close()
	ident, err := ParseIdentity([]byte(id.String() + "\n"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ct.Bytes())
	f.Add(ct.Bytes()[:len(ct.Bytes())-1])
	f.Add([]byte("age-encryption.org/v1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		blob := imager.BlobID{1}
		tree := &imager.Tree{Entries: []imager.Entry{{Path: "k.age", Kind: imager.KindFile, Size: int64(len(data)), Blob: blob}}}
		budget := NewBudget(1 << 20)
		dec, err := Decrypt(tree, memBlobs{blob: data}, ident, Options{MaxFile: 1 << 20, Budget: budget})
		if err != nil {
			if budget.Used() != 0 {
				t.Fatalf("failed, yet holds %d bytes", budget.Used())
			}
			return
		}
		defer dec.Release()
		e := dec.Tree.Entries[0]
		got := make([]byte, e.Size)
		if _, err := dec.ReadBlob(e.Blob, got, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if e.Path != "k" || !bytes.Equal(got, plain) {
			t.Fatalf("decrypted %s to %d bytes that are not the plaintext", e.Path, len(got))
		}
	})
}
