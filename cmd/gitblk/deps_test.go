package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTestPackagesInBinary keeps test-only packages out of the binary
// that runs as a server: `testing` registers flags and pulls in code a
// production process has no use for.
func TestNoTestPackagesInBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" || strings.HasPrefix(pkg, "testing/") || strings.HasSuffix(pkg, "/internal/testutil") {
			t.Errorf("gitblk depends on the test package %s", pkg)
		}
	}
}
