package gitfs

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// writeLoose writes a loose object of type typ with content under id
// (which a crafted repository need not derive from the content).
func writeLoose(t *testing.T, repo, id, typ string, content []byte) {
	t.Helper()
	var b bytes.Buffer
	z := zlib.NewWriter(&b)
	fmt.Fprintf(z, "%s %d\x00", typ, len(content))
	z.Write(content)
	z.Close()
	testutil.WriteLooseRaw(t, repo, id, b.Bytes())
}

// TestTreeContainsItself: a crafted tree whose entry names its own id is
// a corrupt-object error, not an endless walk.
func TestTreeContainsItself(t *testing.T) {
	dir := testutil.NewRepo(t)
	self := "1111111111111111111111111111111111111111"
	raw, _ := hex.DecodeString(self)
	writeLoose(t, dir, self, "tree", append([]byte("40000 a\x00"), raw...))
	commit := []byte("tree " + self + "\nauthor A <a@b> 0 +0000\ncommitter A <a@b> 0 +0000\n\nloop\n")
	sum := sha1.Sum(append([]byte(fmt.Sprintf("commit %d\x00", len(commit))), commit...))
	id := hex.EncodeToString(sum[:])
	writeLoose(t, dir, id, "commit", commit)
	testutil.Git(t, dir, "update-ref", "refs/heads/main", id)

	r := openRepo(t, dir, Options{})
	c, err := r.Resolve("main")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Tree(c, true); !errors.Is(err, ErrCorruptObject) {
		t.Fatalf("Tree of a self-containing tree: %v, want ErrCorruptObject", err)
	}
}

// TestDoubleStarRuns: a pattern with many "**/" in a row matches as one
// does, and quickly (each repeat used to double the matching time).
func TestDoubleStarRuns(t *testing.T) {
	pat := "a/" + strings.Repeat("**/", 60) + "b"
	f := parseAttrFile("", []byte(pat+" export-ignore\n"), true)
	deep := strings.Repeat("x/", 40)
	done := make(chan bool, 1)
	go func() {
		done <- f.lookup("a/"+deep+"b", false) == attrSet && f.lookup("a/b", false) == attrSet &&
			f.lookup("a/"+deep+"c", false) == attrNone
	}()
	select {
	case ok := <-done:
		if !ok {
			t.Error("a run of **/ does not match as a single **/ does")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("matching a run of **/ did not finish")
	}
}
