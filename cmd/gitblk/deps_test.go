package main

import (
	"os"
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

// TestNoCgoInBinary keeps C out of gitblk's own code: it builds with Go
// alone (internal/inflate loads the C libraries at run time instead).
func TestNoCgoInBinary(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{len .CgoFiles}}", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1") // cgo files show only where cgo is on
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, n, _ := strings.Cut(line, " ")
		if strings.HasPrefix(pkg, "github.com/gitblk/gitblk/") && n != "0" {
			t.Errorf("gitblk's package %s has %s cgo files", pkg, n)
		}
	}
}
