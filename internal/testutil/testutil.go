// Package testutil holds the helpers that tests of several packages share:
// git runners with a fixed identity, a check for required tools, a log
// buffer safe for concurrent writers, and in-memory blob readers. It
// imports no package of gitblk, so that every package's in-package tests
// may use it. It is for tests only (cmd/gitblk's deps_test keeps it out of
// the binary).
package testutil

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// GitDate is the fixed author and committer date of test commits: the same
// files give the same commit id.
const GitDate = "2024-01-02T03:04:05Z"

// NeedTool fails the test when program prog is missing, naming the Debian
// package that provides it, and returns its path.
func NeedTool(t testing.TB, prog, debPkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Fatalf("%s not found (install the Debian package %s): %v", prog, debPkg, err)
	}
	return p
}

// GitEnv is the environment for git commands: no user or system config,
// and a fixed identity and date so that commit ids are reproducible.
func GitEnv() []string {
	return append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=gitblk test",
		"GIT_AUTHOR_EMAIL=test@gitblk.invalid",
		"GIT_COMMITTER_NAME=gitblk test",
		"GIT_COMMITTER_EMAIL=test@gitblk.invalid",
		"GIT_AUTHOR_DATE="+GitDate,
		"GIT_COMMITTER_DATE="+GitDate,
		"LC_ALL=C",
	)
}

// GitOutput runs git in dir with stdin (nil for none) and returns its
// standard output; the error includes git's standard error.
func GitOutput(dir string, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = GitEnv()
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// GitBytes runs git in dir and returns its standard output; it fails the
// test on error.
func GitBytes(t testing.TB, dir string, args ...string) []byte {
	t.Helper()
	NeedTool(t, "git", "git")
	out, err := GitOutput(dir, nil, args...)
	if err != nil {
		t.Fatalf("git %s in %s: %v", strings.Join(args, " "), dir, err)
	}
	return out
}

// Git is GitBytes with the trailing newlines removed.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return strings.TrimRight(string(GitBytes(t, dir, args...)), "\n")
}

// NewRepo makes an empty work tree repository in t.TempDir() on branch
// main, with no line-ending conversion and no automatic gc.
func NewRepo(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	Git(t, dir, "init", "-q", "-b", "main")
	Git(t, dir, "config", "core.autocrlf", "false")
	Git(t, dir, "config", "gc.auto", "0")
	return dir
}

// WriteFile writes a file under dir (name slash-separated), creating
// parents, with mode set exactly.
func WriteFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// CommitAll commits everything in the work tree dir and returns the
// commit id.
func CommitAll(t testing.TB, dir, msg string) string {
	t.Helper()
	Git(t, dir, "add", "-A")
	Git(t, dir, "commit", "-q", "--allow-empty", "-m", msg)
	return Git(t, dir, "rev-parse", "HEAD")
}

// LoosePath is the file of loose object id in the work tree repository dir.
func LoosePath(dir, id string) string {
	return filepath.Join(dir, ".git", "objects", id[:2], id[2:])
}

// DamageLoose rewrites the file of loose object id with damage applied.
func DamageLoose(t testing.TB, dir, id string, damage func([]byte) []byte) {
	t.Helper()
	p := LoosePath(dir, id)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, damage(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// LogBuffer is a bytes.Buffer safe for a writer (a logger, a process) and
// a test reading it at once.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Blobs is an in-memory blob reader: blob contents by id. Blobs[imager.BlobID]
// is an imager.BlobReader; the id type is a parameter so that this package
// does not import imager, whose own tests use it.
type Blobs[ID ~[20]byte] map[ID][]byte

// ReadBlob reads blob id at off with io.ReaderAt semantics.
func (m Blobs[ID]) ReadBlob(id ID, p []byte, off int64) (int, error) {
	b, ok := m[id]
	if !ok {
		return 0, fmt.Errorf("testutil: no blob %x", id)
	}
	return bytes.NewReader(b).ReadAt(p, off) // refuses a negative offset
}

// BlobID parses a hex object id (an imager.BlobID, a plumbing.Hash); it
// fails the test when hexID is not one.
func BlobID(t testing.TB, hexID string) [20]byte {
	t.Helper()
	var id [20]byte
	if len(hexID) != 2*len(id) {
		t.Fatalf("object id %q: want %d hex digits", hexID, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(hexID)); err != nil {
		t.Fatalf("object id %q: %v", hexID, err)
	}
	return id
}

// PackIdx is the path of the one pack index of the work tree repository
// dir; it fails the test when there is not exactly one.
func PackIdx(t testing.TB, dir string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".git", "objects", "pack", "*.idx"))
	if err != nil || len(m) != 1 {
		t.Fatalf("pack indexes: %v %v", m, err)
	}
	return m[0]
}

// Run runs a command and returns its standard output, failing the test
// with its standard error on error.
func Run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// WriteLooseRaw writes raw (zlib) bytes as the file of loose object id in
// the work tree repository dir: a crafted object need not match its id.
func WriteLooseRaw(t testing.TB, dir, id string, raw []byte) {
	t.Helper()
	p := LoosePath(dir, id)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, raw, 0o444); err != nil {
		t.Fatal(err)
	}
}

// BuildWithGoAlone builds the main package pkg (a path as go build takes
// it, from the test's directory) as a machine with only Go installed
// would: PATH holds only GOROOT/bin (no C compiler, so CGO_ENABLED
// defaults to 0), CC and CGO_ENABLED are unset, and the local toolchain is
// used. It returns the program's path in t.TempDir(), and fails the test
// when that go does not see cgo off or the build fails.
func BuildWithGoAlone(t testing.TB, pkg string) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin")
	goCmd := filepath.Join(goBin, "go")
	if _, err := os.Stat(goCmd); err != nil {
		t.Fatalf("the go command is not in GOROOT/bin: %v", err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "CGO_ENABLED=") && !strings.HasPrefix(kv, "CC=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+goBin, "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	goRun := func(args ...string) ([]byte, error) {
		return (&exec.Cmd{Path: goCmd, Args: append([]string{"go"}, args...), Env: env}).CombinedOutput()
	}
	if out, err := goRun("env", "CGO_ENABLED"); err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("go env CGO_ENABLED with Go alone in PATH: %q, %v", out, err)
	}
	abs, err := filepath.Abs(pkg)
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(t.TempDir(), filepath.Base(abs))
	if out, err := goRun("build", "-o", prog, pkg); err != nil {
		t.Fatalf("go build %s with Go alone: %v\n%s", pkg, err, out)
	}
	return prog
}
