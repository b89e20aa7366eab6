package inflate

import (
	"os"
	"os/exec"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// TestBuildsWithGoAlone builds a program that uses this package with only
// the go command in PATH (no C compiler, so CGO_ENABLED defaults to 0) and
// runs it: it must still inflate with the C libraries, and with each
// inflater that GITBLK_INFLATE forces.
func TestBuildsWithGoAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program: not in -short")
	}
	prog := testutil.BuildWithGoAlone(t, "./testdata/name")
	want := map[string]string{
		"":           "libdeflate+zlib (dlopen)",
		"libdeflate": "libdeflate+zlib (dlopen)",
		"zlib":       "zlib (dlopen)",
		"go":         "go compress/zlib",
	}
	for v, name := range want {
		if !dlSupported {
			name = "go compress/zlib"
		}
		cmd := exec.Command(prog)
		cmd.Env = append(os.Environ(), EnvVar+"="+v)
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != name+": built with Go alone\n" {
			t.Errorf("%s=%s: %q, %v; want %q", EnvVar, v, out, err, name)
		}
	}
}
