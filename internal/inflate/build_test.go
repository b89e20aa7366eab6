package inflate

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestBuildsWithGoAlone builds a program that uses this package with only
// the go command in PATH (no C compiler, so CGO_ENABLED defaults to 0) and
// runs it: it must still inflate with the C libraries, and with each
// inflater that GITBLK_INFLATE forces.
func TestBuildsWithGoAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program: not in -short")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin")
	if _, err := os.Stat(filepath.Join(goBin, "go")); err != nil {
		t.Fatalf("the go command is not in GOROOT/bin: %v", err)
	}
	prog := filepath.Join(t.TempDir(), "name")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "CGO_ENABLED=") && !strings.HasPrefix(kv, "CC=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+goBin, "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	out, err := (&exec.Cmd{Path: filepath.Join(goBin, "go"), Args: []string{"go", "env", "CGO_ENABLED"}, Env: env}).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("go env CGO_ENABLED without a C compiler: %q, %v", out, err)
	}
	build := &exec.Cmd{Path: filepath.Join(goBin, "go"), Args: []string{"go", "build", "-o", prog, "./testdata/name"}, Env: env}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build with Go alone: %v\n%s", err, out)
	}
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
