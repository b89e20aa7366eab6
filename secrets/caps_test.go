package secrets

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"filippo.io/age"

	"github.com/gitblk/gitblk/imager"
)

// countingBlobs serves a blob of a claimed size, counting the bytes read:
// the first real bytes, then zeros.
type countingBlobs struct {
	data []byte
	size int64
	read atomic.Int64
}

func (c *countingBlobs) ReadBlob(_ imager.BlobID, p []byte, off int64) (int, error) {
	if off >= c.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), c.size-off))
	clear(p[:n])
	if off < int64(len(c.data)) {
		copy(p[:n], c.data[off:])
	}
	c.read.Add(int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// The caps are checked before plaintext memory is taken, and a file far
// over the cap is refused from its size alone: a 10 GiB .age file is not
// read at all, and one just over the cap only as far as its header;
// plaintext memory is reserved from the budget before it is mapped.
func TestCapsBeforeReading(t *testing.T) {
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseIdentity([]byte(x.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	encrypt := func(n int) []byte {
		var b bytes.Buffer
		w, _ := age.Encrypt(&b, x.Recipient())
		w.Write(bytes.Repeat([]byte{'k'}, n))
		w.Close()
		return b.Bytes()
	}
	const maxFile = 64 << 10
	// Reading a header: gitblk's look for its end, then age's parse of it
	// (through a buffered reader).
	const headerRead = 2 * (maxHeader + ageNonceSize)
	header := encrypt(0)
	tests := []struct {
		what     string
		blob     *countingBlobs
		budget   int64
		want     error
		maxRead  int64
		wantUsed int64
	}{
		{"10 GiB file", &countingBlobs{data: header, size: 10 << 30}, 1 << 30, ErrTooLarge, 0, 0},
		{"one byte over the file cap", &countingBlobs{data: encrypt(maxFile + 1), size: int64(len(encrypt(maxFile + 1)))}, 1 << 30, ErrTooLarge, headerRead, 0},
		{"over the memory budget", &countingBlobs{data: encrypt(1000), size: int64(len(encrypt(1000)))}, 999, ErrMemory, headerRead, 0},
		{"within both", &countingBlobs{data: encrypt(1000), size: int64(len(encrypt(1000)))}, 1000, nil, 1 << 20, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.what, func(t *testing.T) {
			tree := &imager.Tree{Entries: []imager.Entry{{Path: "k.age", Kind: imager.KindFile, Size: tt.blob.size, Blob: imager.BlobID{1}}}}
			budget := NewBudget(tt.budget)
			dec, err := Decrypt(tree, tt.blob, id, Options{MaxFile: maxFile, Budget: budget})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decrypt: %v, want %v", err, tt.want)
			}
			if n := tt.blob.read.Load(); n > tt.maxRead {
				t.Errorf("read %d ciphertext bytes, want at most %d", n, tt.maxRead)
			}
			if budget.Used() != tt.wantUsed {
				t.Errorf("budget used %d, want %d", budget.Used(), tt.wantUsed)
			}
			if dec != nil {
				dec.Release()
				if budget.Used() != 0 {
					t.Errorf("after Release: used %d", budget.Used())
				}
			}
		})
	}
}

// The payload is decrypted as age writes it at every chunk boundary, and
// a file cut at a chunk boundary (a valid-looking shorter STREAM) fails.
func TestChunkBoundaries(t *testing.T) {
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseIdentity([]byte(x.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, ageChunkSize - 1, ageChunkSize, ageChunkSize + 1, 2 * ageChunkSize, 2*ageChunkSize + 1} {
		plain := make([]byte, n)
		for i := range plain {
			plain[i] = byte(i*7 + i>>16)
		}
		var ct bytes.Buffer
		w, _ := age.Encrypt(&ct, x.Recipient())
		w.Write(plain)
		w.Close()
		decrypt := func(data []byte) ([]byte, error) {
			tree := &imager.Tree{Entries: []imager.Entry{{Path: "k.age", Kind: imager.KindFile, Size: int64(len(data)), Blob: imager.BlobID{1}}}}
			dec, err := Decrypt(tree, memBlobs{{1}: data}, id, Options{MaxFile: 1 << 20, Budget: NewBudget(1 << 20)})
			if err != nil {
				return nil, err
			}
			defer dec.Release()
			e := dec.Tree.Entries[0]
			got := make([]byte, e.Size)
			if _, err := dec.ReadBlob(e.Blob, got, 0); err != nil && err != io.EOF {
				return nil, err
			}
			return got, nil
		}
		got, err := decrypt(ct.Bytes())
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%d bytes: %v, got %d bytes, equal %v", n, err, len(got), bytes.Equal(got, plain))
		}
		if n > ageChunkSize {
			payload := n + (n+ageChunkSize-1)/ageChunkSize*ageTagSize
			start := ct.Len() - payload // header and nonce
			cut := ct.Bytes()[:start+ageEncChunkSize]
			if _, err := decrypt(cut); !errors.Is(err, ErrDecrypt) {
				t.Errorf("%d bytes cut after the first chunk: %v, want ErrDecrypt", n, err)
			}
		}
	}
}
