package secrets_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/secrets"
	"golang.org/x/sys/unix"
)

// shifted is the plaintext byte for a byte of the test's pattern: the
// plaintext is made by tr(1) in a child process, so that the test itself
// never holds it and a copy found in memory is the code's.
func shifted(b byte) byte {
	if b >= 'a' && b <= 'z' {
		return 'a' + (b-'a'+1)%26
	}
	return b
}

// findShifted reports whether hay holds pattern, shifted.
func findShifted(hay, pattern []byte) bool {
	first := shifted(pattern[0])
	for i := 0; i+len(pattern) <= len(hay); i++ {
		if hay[i] != first {
			continue
		}
		j := 1
		for j < len(pattern) && hay[i+j] == shifted(pattern[j]) {
			j++
		}
		if j == len(pattern) {
			return true
		}
	}
	return false
}

// memoryHolds scans this process's writable and anonymous mappings (the Go
// heap, stacks, the plaintext mapping) through /proc/self/mem for pattern, shifted.
func memoryHolds(t *testing.T, pattern []byte) []string {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skipf("no /proc/self/maps: %v", err)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Skipf("no /proc/self/mem: %v", err)
	}
	defer mem.Close()
	buf := make([]byte, 1<<20)
	var found []string
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// Readable, and writable or anonymous (the sealed plaintext
		// mapping is read-only); not the kernel's [vvar] and the like.
		if len(f) < 5 || f[1][0] != 'r' || (f[1][1] != 'w' && f[4] != "0") || (len(f) > 5 && strings.HasPrefix(f[5], "[v")) {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		overlap := uint64(len(pattern))
		for off := start; off < end; {
			n := min(uint64(len(buf)), end-off)
			m, _ := mem.ReadAt(buf[:n], int64(off))
			if m > 0 && findShifted(buf[:m], pattern) {
				found = append(found, sc.Text())
				break
			}
			if off+n >= end {
				break
			}
			off += n - overlap
		}
	}
	clear(buf)
	return found
}

// Plaintext is decrypted straight into the locked mapping, which Release
// zeroes: no copy is left behind on the Go heap (age's own readers leave
// each decrypted chunk there, freed but not zeroed), nor in the register
// copies a signal leaves on a signal stack: the test signals its own thread
// right after each read, while a read that left plaintext in the vector
// registers would still have it there.
func TestNoPlaintextLeftInMemory(t *testing.T) {
	need(t, "sh", "tr", "head", "yes")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dir := t.TempDir()
	k := makeKeys(t, dir)
	pattern := []byte("gitblk heap probe qzxwvutsrponmlkjihgfedcba 0123456789")
	// Two files: one under a STREAM chunk, one of two chunks and a bit.
	for name, size := range map[string]int{"small": 700, "big": 150_000} {
		plain := filepath.Join(dir, name)
		run(t, dir, nil, "sh", "-c", fmt.Sprintf("yes '%s' | head -c %d | tr a-z b-za >%s", pattern, size, plain))
		run(t, dir, nil, "age", "-e", "-r", k.ageRecipient, "-o", plain+".age", plain)
		os.Remove(plain)
	}
	files := map[string][]byte{}
	for _, name := range []string{"small", "big"} {
		ct, err := os.ReadFile(filepath.Join(dir, name+".age"))
		if err != nil {
			t.Fatal(err)
		}
		files[name+".age"] = ct
	}
	tree, r := repo(t, files)
	id, err := secrets.LoadIdentity(k.ageID)
	if err != nil {
		t.Fatal(err)
	}
	if found := memoryHolds(t, pattern); len(found) > 0 {
		t.Fatalf("the plaintext is in memory before decryption: %v", found)
	}
	budget := secrets.NewBudget(1 << 20)
	dec, err := secrets.Decrypt(tree, r, id, secrets.Options{MaxFile: 1 << 20, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	// While held, the plaintext is there (the scan can find it) and right.
	if found := memoryHolds(t, pattern); len(found) == 0 {
		t.Fatal("the scan does not find the decrypted plaintext while it is held")
	}
	for _, e := range dec.Tree.Entries {
		b := make([]byte, e.Size)
		if _, err := dec.ReadBlob(e.Blob, b, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		// The runtime takes a SIGURG it did not ask for as a no-op.
		if err := unix.Tgkill(unix.Getpid(), unix.Gettid(), unix.SIGURG); err != nil {
			t.Fatal(err)
		}
		line := append(append([]byte{}, pattern...), '\n')
		for i := range b {
			if b[i] != shifted(line[i%len(line)]) {
				t.Fatalf("%s: byte %d is %q", e.Path, i, b[i])
			}
		}
		clear(b)
	}
	dec.Release()
	if found := memoryHolds(t, pattern); len(found) > 0 {
		t.Errorf("after Release, the plaintext is still in memory, in:\n%s", strings.Join(found, "\n"))
	}
}
