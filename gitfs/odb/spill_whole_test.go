//go:build linux

package odb

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// zeroFill writes every byte of a file whose size is not a multiple of
// its chunk, over whatever the file held, and fails on a file it cannot
// write.
func TestZeroFill(t *testing.T) {
	size := int64(len(zeroChunk))*2 + 4097
	path := filepath.Join(t.TempDir(), "spill")
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xa5}, int(size)), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !zeroFill(f, size) {
		t.Fatal("zeroFill failed on a writable file")
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != size || !bytes.Equal(got, make([]byte, size)) {
		t.Fatalf("file after zeroFill: %d bytes, %d of them non-zero; want %d zero bytes", len(got), int64(len(got))-int64(bytes.Count(got, []byte{0})), size)
	}

	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if zeroFill(ro, 10) {
		t.Fatal("zeroFill reported success on a read-only file")
	}
}
