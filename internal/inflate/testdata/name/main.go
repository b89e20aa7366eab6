// Command name prints the inflater internal/inflate uses, and inflates a
// stream with it (for TestBuildsWithGoAlone).
package main

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"os"

	"github.com/gitblk/gitblk/internal/inflate"
)

func main() {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	w.Write([]byte("built with Go alone"))
	w.Close()
	dst := make([]byte, len("built with Go alone"))
	if _, err := inflate.Whole(dst, b.Bytes()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s: %s\n", inflate.Name(), dst)
}
