package integration

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// nbdClientScript is a libnbd (python3-libnbd) client that connects once
// (NBD_OPT_GO pins the export's commit) and then obeys commands on stdin, one
// reply line each:
//
//	read OFF LEN        -> "ok SHA256HEX" or "err ERRNONAME MESSAGE"
//	dump OFF LEN PATH   -> "ok" or "err ERRNONAME MESSAGE" (bytes to PATH)
//	quit
//
// Its first line is "size N". It keeps one connection so a test can act on
// the repository between reads of the same connection.
const nbdClientScript = `
import hashlib, sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
print("size", h.get_size(), flush=True)
for line in sys.stdin:
    f = line.split()
    if not f:
        continue
    if f[0] == "quit":
        break
    off, n = int(f[1]), int(f[2])
    try:
        if f[0] == "read":
            buf = h.pread(n, off)
            print("ok", hashlib.sha256(buf).hexdigest(), flush=True)
        elif f[0] == "dump":
            with open(f[3], "wb") as out:
                pos = off
                while pos < off + n:
                    k = min(1 << 20, off + n - pos)
                    out.write(h.pread(k, pos))
                    pos += k
            print("ok", flush=True)
        else:
            print("err EINVAL unknown command", f[0], flush=True)
    except nbd.Error as e:
        print("err", e.errno or "E?", str(e.string).replace("\n", " "), flush=True)
h.shutdown()
`

// nbdClient is one running nbdClientScript.
type nbdClient struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	stderr *testutil.LogBuffer
	size   int64
}

// pythonForLibnbd returns a python3 that can import the nbd module.
func pythonForLibnbd(t *testing.T) string {
	t.Helper()
	// Debian's module is for /usr/bin/python3; a python3 earlier in PATH
	// (a virtualenv) may not see it.
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		py = testutil.NeedTool(t, "python3", "python3")
	}
	if out, err := exec.Command(py, "-c", "import nbd").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import nbd (install Debian package python3-libnbd): %v\n%s", py, err, out)
	}
	return py
}

// dialNBD connects a new client to uri; the connection is closed at cleanup.
func dialNBD(t *testing.T, uri string) *nbdClient {
	t.Helper()
	py := pythonForLibnbd(t)
	c := &nbdClient{t: t, stderr: &testutil.LogBuffer{}}
	c.cmd = exec.Command(py, "-c", nbdClientScript, uri)
	c.cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start libnbd client: %v", err)
	}
	t.Cleanup(c.close)
	c.lines = bufio.NewScanner(stdout)
	first := c.reply()
	n, ok := strings.CutPrefix(first, "size ")
	if !ok {
		t.Fatalf("libnbd client on %s: first line %q, want size N\n%s", uri, first, c.stderr.String())
	}
	if c.size, err = strconv.ParseInt(n, 10, 64); err != nil {
		t.Fatalf("libnbd client: bad size line %q", first)
	}
	return c
}

// reply returns the client's next output line.
func (c *nbdClient) reply() string {
	c.t.Helper()
	if !c.lines.Scan() {
		c.t.Fatalf("libnbd client ended early: %v\nstderr:\n%s", c.lines.Err(), c.stderr.String())
	}
	return c.lines.Text()
}

// do sends one command and returns its reply line.
func (c *nbdClient) do(format string, args ...any) string {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.stdin, format+"\n", args...); err != nil {
		c.t.Fatalf("libnbd client: write command: %v\nstderr:\n%s", err, c.stderr.String())
	}
	return c.reply()
}

// dump reads [off, off+n) into a file and returns its bytes; it fails the
// test on a read error.
func (c *nbdClient) dump(off, n int64) []byte {
	c.t.Helper()
	path := filepath.Join(c.t.TempDir(), "dump")
	if r := c.do("dump %d %d %s", off, n, path); r != "ok" {
		c.t.Fatalf("read [%d, %d): %s", off, off+n, r)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// close ends the client; it is idempotent.
func (c *nbdClient) close() {
	if c.stdin == nil {
		return
	}
	fmt.Fprintln(c.stdin, "quit")
	c.stdin.Close()
	c.stdin = nil
	if err := c.cmd.Wait(); err != nil {
		c.t.Errorf("libnbd client exit: %v\nstderr:\n%s", err, c.stderr.String())
	}
}

// nbdcopyImage copies a whole export with nbdcopy (a new connection).
func nbdcopyImage(t *testing.T, uri string) ([]byte, error) {
	t.Helper()
	return nbdcopyTo(uri, filepath.Join(t.TempDir(), "copy.img"))
}

// nbdcopyTo copies a whole export with nbdcopy into the file out and returns
// its bytes; it is safe to call from any goroutine.
func nbdcopyTo(uri, out string) ([]byte, error) {
	cmd := exec.Command("nbdcopy", uri, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nbdcopy %s: %w\n%s", uri, err, b)
	}
	return os.ReadFile(out)
}

// randomContent returns n deterministic incompressible bytes.
func randomContent(seed uint64, n int) string {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return string(b)
}

// requireBytesEqual fails with the first differing offset.
func requireBytesEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: %d bytes, want %d; first difference at offset %d", what, len(got), len(want), i)
}

// TestDeployPinnedConnection: a connection keeps reading the commit the ref
// named when it selected the export, after a push moves the ref; a new
// connection reads the new commit.
func TestDeployPinnedConnection(t *testing.T) {
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	for _, format := range []string{"tar", "fat"} {
		t.Run(format, func(t *testing.T) {
			// CI commits in a work repository and pushes to the bare
			// repository the host serves.
			work := newRepo(t, map[string]string{
				"index.html":    "<h1>version A</h1>\n",
				"assets/a.bin":  randomContent(1, 300<<10),
				"gone-in-b.txt": "only in A\n",
			})
			served := filepath.Join(t.TempDir(), "site.git")
			testutil.Git(t, work, "init", "-q", "--bare", served)
			testutil.Git(t, work, "push", "-q", served, "main")
			commitA := testutil.Git(t, work, "rev-parse", "HEAD")
			imageA := buildImage(t, format, served, "main")

			sock, _ := startServe(t, served, "main")
			uri := nbdURI(sock, format)
			pinned := dialNBD(t, uri)
			if pinned.size != int64(len(imageA)) {
				t.Fatalf("pinned connection size %d, build of A %d", pinned.size, len(imageA))
			}

			if err := os.Remove(filepath.Join(work, "gone-in-b.txt")); err != nil {
				t.Fatal(err)
			}
			commitB := commitFiles(t, work, map[string]string{
				"index.html":   "<h1>version B, longer than A</h1>\n",
				"assets/b.bin": randomContent(2, 700<<10),
			}, "version B")
			testutil.Git(t, work, "push", "-q", served, "main")
			if got := testutil.Git(t, served, "rev-parse", "main"); got != commitB || got == commitA {
				t.Fatalf("served main is %s after push, want B %s", got, commitB)
			}
			imageB := buildImage(t, format, served, "main")
			if bytes.Equal(imageA, imageB) {
				t.Fatal("images of A and B are equal: the test would prove nothing")
			}

			requireBytesEqual(t, "pinned connection after the push (want A)", pinned.dump(0, pinned.size), imageA)

			gotB, err := nbdcopyImage(t, uri)
			if err != nil {
				t.Fatal(err)
			}
			requireBytesEqual(t, "new connection after the push (want B)", gotB, imageB)
		})
	}
}

// TestDeployRepackWhileServing: `git gc --prune=now` and `git repack -a -d`
// move every object (loose to pack, old pack to new pack) while connections
// read: no read fails and every byte equals the build output.
func TestDeployRepackWhileServing(t *testing.T) {
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	for _, format := range []string{"tar", "fat"} {
		t.Run(format, func(t *testing.T) {
			files := map[string]string{"big/large.bin": randomContent(10, 3<<20)}
			for i := range 40 {
				files[fmt.Sprintf("dir%d/file%02d.bin", i%4, i)] = randomContent(uint64(100+i), 64<<10+i*1000)
			}
			repo := newRepo(t, files)
			// A second commit so repack has history; objects stay loose.
			commitFiles(t, repo, map[string]string{"dir0/file00.bin": randomContent(99, 50<<10)}, "second")
			loose := testutil.Git(t, repo, "count-objects")
			if strings.HasPrefix(loose, "0 objects") {
				t.Fatalf("want loose objects before gc, git count-objects says %q", loose)
			}
			want := buildImage(t, format, repo, "main")

			sock, _ := startServe(t, repo, "main")
			uri := nbdURI(sock, format)
			pinned := dialNBD(t, uri)
			if pinned.size != int64(len(want)) {
				t.Fatalf("export size %d, build %d", pinned.size, len(want))
			}

			// nbdcopy streams the whole image over and over, each time on a
			// new connection, until both git commands are done.
			done := make(chan struct{})
			var wg sync.WaitGroup
			var copyErrs []error
			copies := 0
			copyOut := filepath.Join(t.TempDir(), "copy.img")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					got, err := nbdcopyTo(uri, copyOut)
					copies++
					if err == nil && !bytes.Equal(got, want) {
						err = fmt.Errorf("nbdcopy #%d: bytes differ from the build output", copies)
					}
					if err != nil {
						copyErrs = append(copyErrs, err)
						return
					}
					select {
					case <-done:
						return
					default:
					}
				}
			}()

			// Stops the copies on every path out of the test, a failure too.
			stopCopies := sync.OnceFunc(func() { close(done); wg.Wait() })
			defer stopCopies()

			// The pinned connection reads a third of the image between
			// each step, so its reads straddle every object move.
			third := pinned.size / 3
			var got []byte
			got = append(got, pinned.dump(0, third)...)
			testutil.Git(t, repo, "gc", "-q", "--prune=now")
			got = append(got, pinned.dump(third, third)...)
			// A new object makes repack write a pack of another name and
			// delete the one gc wrote, which holds everything main needs.
			packsAfterGC := packFiles(t, repo)
			if len(packsAfterGC) == 0 {
				t.Fatal("git gc wrote no pack")
			}
			blob, err := testutil.GitOutput(repo, strings.NewReader("made between gc and repack\n"), "hash-object", "-w", "--stdin")
			if err != nil {
				t.Fatal(err)
			}
			testutil.Git(t, repo, "tag", "extra-object", strings.TrimSpace(string(blob)))
			testutil.Git(t, repo, "repack", "-q", "-a", "-d")
			packsAfterRepack := packFiles(t, repo)
			for _, p := range packsAfterGC {
				if slices.Contains(packsAfterRepack, p) {
					t.Fatalf("pack %s survived repack -a -d: the objects did not move", p)
				}
			}
			got = append(got, pinned.dump(2*third, pinned.size-2*third)...)
			stopCopies()

			if after := testutil.Git(t, repo, "count-objects"); !strings.HasPrefix(after, "0 objects") {
				t.Errorf("git gc left loose objects: %q", after)
			}
			requireBytesEqual(t, "pinned connection across gc and repack", got, want)
			for _, err := range copyErrs {
				t.Error(err)
			}
			t.Logf("%d whole-image nbdcopy runs during gc and repack", copies)

			// A new connection after the repack reads from the new pack only.
			again, err := nbdcopyImage(t, uri)
			if err != nil {
				t.Fatal(err)
			}
			requireBytesEqual(t, "new connection after repack", again, want)
		})
	}
}

// packFiles lists the pack files of repo by name.
func packFiles(t *testing.T, repo string) []string {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(repo, ".git", "objects", "pack", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range packs {
		packs[i] = filepath.Base(p)
	}
	return packs
}

// TestDeployMissingObject: a loose blob deleted from under the server makes
// the reads of its bytes fail with EIO; every other read, and new
// connections, still work, and the server exits cleanly.
func TestDeployMissingObject(t *testing.T) {
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	const chunk = 64 << 10
	// The victim is above gitfs's large-object threshold (1 MiB), so the
	// server reads it from disk only when a client asks for its bytes.
	victim := randomContent(7, 2<<20+333)
	repo := newRepo(t, map[string]string{
		"a-first.txt":  strings.Repeat("first\n", 100000),
		"m-victim.bin": victim,
		"z-last.txt":   strings.Repeat("last\n", 120000),
	})
	want := buildImage(t, "tar", repo, "main")
	start := bytes.Index(want, []byte(victim))
	if start < 0 {
		t.Fatal("victim content not found contiguous in the tar build output")
	}
	end := start + len(victim)

	// A memory cache of 4 MiB is too small for the 3.3 MB image to be
	// prefetched: the victim is read only when a client asks for it.
	sock, _ := startServe(t, "--cache-size", "4M", repo, "main")
	uri := nbdURI(sock, "tar")
	c := dialNBD(t, uri)
	if c.size != int64(len(want)) {
		t.Fatalf("export size %d, build %d", c.size, len(want))
	}

	blob := testutil.Git(t, repo, "rev-parse", "main:m-victim.bin")
	objPath := filepath.Join(repo, ".git", "objects", blob[:2], blob[2:])
	if err := os.Remove(objPath); err != nil {
		t.Fatalf("the victim blob must be a loose object: %v", err)
	}

	var eio, good int
	for off := int64(0); off < c.size; off += chunk {
		n := min(chunk, c.size-off)
		r := c.do("read %d %d", off, n)
		overlaps := off < int64(end) && off+n > int64(start)
		sum := sha256.Sum256(want[off : off+n])
		switch {
		case overlaps && strings.HasPrefix(r, "err EIO"):
			eio++
		case overlaps:
			t.Errorf("read [%d, %d) covers the deleted blob [%d, %d): got %q, want an EIO error", off, off+n, start, end, r)
		case r == "ok "+hex.EncodeToString(sum[:]):
			good++
		default:
			t.Errorf("read [%d, %d) outside the deleted blob: got %q, want the build's bytes", off, off+n, r)
		}
	}
	t.Logf("%d reads answered EIO, %d reads right", eio, good)

	// The same connection still serves the rest after the errors.
	if r := c.do("read 0 4096"); !strings.HasPrefix(r, "ok ") {
		t.Errorf("read of the first block after the errors: %q", r)
	}

	// A new connection to the same commit, with another client (QEMU's block
	// layer): the blob's bytes are an I/O error, the rest reads.
	testutil.NeedTool(t, "qemu-io", "qemu-utils")
	qemuRead := func(off, n int) (string, error) {
		out, err := exec.Command("qemu-io", "-r", "-f", "raw", "-c",
			fmt.Sprintf("read %d %d", off, n), uri).CombinedOutput()
		return string(out), err
	}
	out, _ := qemuRead(start&^(chunk-1), chunk)
	if !strings.Contains(out, "Input/output error") {
		t.Errorf("qemu-io read of the deleted blob on a new connection: want an Input/output error, got:\n%s", out)
	}
	if out, err := qemuRead(0, chunk); err != nil || strings.Contains(out, "error") {
		t.Errorf("qemu-io read of the first chunk on a new connection: %v\n%s", err, out)
	}

	// A new commit without the blob deploys normally.
	testutil.Git(t, repo, "rm", "-q", "m-victim.bin")
	testutil.Git(t, repo, "commit", "-q", "-m", "drop the broken blob")
	wantC := buildImage(t, "tar", repo, "main")
	gotC, err := nbdcopyImage(t, uri)
	if err != nil {
		t.Fatalf("new connection after the broken reads: %v", err)
	}
	requireBytesEqual(t, "new connection to the repaired ref", gotC, wantC)
}
