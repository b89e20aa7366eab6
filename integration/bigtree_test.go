package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// Shape of the big tree: 250,000 files of about 25 bytes in 500
// directories of 10 subdirectories. Laying it out takes hundreds of
// milliseconds (its layouts took 6 s before issue 12), many times the
// handshake timeout the test sets.
const (
	bigDirs, bigSubs, bigFiles = 500, 10, 50
	// Short, yet long enough for nbdinfo to send its options while the
	// server's layout work and the rest of the suite share two cores
	// (10 ms was not: a starved client took 23 ms).
	bigHandshake = 50 * time.Millisecond
	// A first client must have waited at least this long on its
	// connection (a multiple of the timeout) for the test to count.
	bigMinWait = 2 * bigHandshake
)

// bigTreeRepo writes a bare repository whose main holds the big tree,
// through git fast-import, and tag v1 on a second commit with one file
// changed (another tree, laid out only when a client asks for it).
func bigTreeRepo(t *testing.T) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "big.git")
	testutil.Git(t, "", "init", "-q", "--bare", "-b", "main", repo)
	var s bytes.Buffer
	const ident = "Test <test@example.invalid> 1704067200 +0000"
	fmt.Fprintf(&s, "commit refs/heads/main\ncommitter %s\ndata 9\nbig tree\n", ident)
	n := 0
	for d := range bigDirs {
		for sd := range bigSubs {
			for f := range bigFiles {
				body := fmt.Sprintf("file %07d of the tree\n", n)
				fmt.Fprintf(&s, "M 100644 inline d%03d/s%d/f%02d.txt\ndata %d\n%s\n", d, sd, f, len(body), body)
				n++
			}
		}
	}
	fmt.Fprintf(&s, "\ncommit refs/tags/v1\ncommitter %s\ndata 3\nv1\nfrom refs/heads/main\n", ident)
	fmt.Fprintf(&s, "M 100644 inline d000/s0/f00.txt\ndata 8\nchanged\n\ndone\n")
	cmd := exec.Command("git", "-C", repo, "fast-import", "--quiet", "--done")
	cmd.Stdin = &s
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git fast-import: %v\n%s", err, out)
	}
	return repo
}

// closedDurations returns, by export name, the durations the server logged
// for connections that chose an export ("nbd connection closed").
func closedDurations(t *testing.T, log string) map[string][]time.Duration {
	t.Helper()
	re := regexp.MustCompile(`msg="nbd connection closed".* duration=(\S+) export=("(?:[^"\\]|\\.)*"|\S+)`)
	out := map[string][]time.Duration{}
	for _, line := range strings.Split(log, "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("duration in %q: %v", line, err)
		}
		name := m[2]
		if u, err := strconv.Unquote(name); err == nil {
			name = u
		}
		out[name] = append(out[name], d)
	}
	return out
}

// TestBigTreeShortHandshake serves a tree of 250,000 files with a 50 ms
// handshake timeout and a cold listing cache, and connects the first
// clients of the tar and fat exports the moment the socket exists, while
// the server is still laying the tree out: each is served (right size,
// tar bytes equal to git archive's, fat accepted by fsck.fat) after
// waiting on its connection several times the timeout. A client of a tag,
// laid out for that connection, is served too; a client that stays
// silent is dropped after the timeout, so the timeout is really that
// short. Issue 12: the handshake deadline bounds the client's silence,
// not the server's work.
func TestBigTreeShortHandshake(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 250,000-file repository (about 10 s) and copies its images; skipped with -short")
	}
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	testutil.NeedTool(t, "fsck.fat", "dosfstools")
	repo := bigTreeRepo(t)

	sock, stop, log, _ := launchServe(t, "--handshake-timeout", bigHandshake.String(),
		"--cache-dir", t.TempDir(), "--refs", "refs/tags/*", repo, "main")

	deadline := time.Now().Add(serveReadyTimeout)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket %s after %v", sock, serveReadyTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	if strings.Contains(log.String(), "msg=ready") {
		t.Fatal("the server was ready before the first clients connected: the tree is too small to show anything")
	}

	// The first client of each export, at once.
	sizes := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range []string{"", "fat"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command("nbdinfo", "--size", nbdURI(sock, name)).CombinedOutput()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("first client of export %q: %v\n%s", name, err, out)
			}
			sizes[name] = strings.TrimSpace(string(out))
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Their bytes: the tar export is git archive's, the fat one checks out.
	tarImg := filepath.Join(t.TempDir(), "big.tar")
	testutil.Run(t, "nbdcopy", nbdURI(sock, ""), tarImg)
	got, err := os.ReadFile(tarImg)
	if err != nil {
		t.Fatal(err)
	}
	if want := sizes[""]; strconv.Itoa(len(got)) != want {
		t.Errorf("tar export: nbdinfo said %s bytes, nbdcopy read %d", want, len(got))
	}
	archive := testutil.GitBytes(t, repo, "archive", "--format=tar", "main")
	if n := min(len(got), len(archive)); !bytes.Equal(got[:n], archive[:n]) || !allZero(got[n:]) || !allZero(archive[n:]) {
		t.Error("tar export differs from git archive of main")
	}
	fatImg := filepath.Join(t.TempDir(), "big.fat")
	testutil.Run(t, "nbdcopy", nbdURI(sock, "fat"), fatImg)
	if fi, err := os.Stat(fatImg); err != nil || strconv.FormatInt(fi.Size(), 10) != sizes["fat"] {
		t.Errorf("fat export: nbdinfo said %s bytes, copy %v", sizes["fat"], fi)
	}
	if out, err := exec.Command("fsck.fat", "-n", fatImg).CombinedOutput(); err != nil {
		t.Errorf("fsck.fat -n on the fat export: %v\n%s", err, out)
	}

	// A tag's image is laid out for the connection that asks for it.
	tag := "refs/tags/v1"
	if out, err := exec.Command("nbdinfo", "--size", nbdURI(sock, tag)).CombinedOutput(); err != nil {
		t.Errorf("first client of export %q: %v\n%s", tag, err, out)
	}

	// A silent client is dropped after the short timeout.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	greeting, _ := io.ReadAll(bufio.NewReader(c))
	if len(greeting) == 0 || !bytes.HasPrefix(greeting, []byte(nbdMagic)) {
		t.Errorf("silent client: got %q before the close, want the greeting", greeting)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("a silent client was kept %v with --handshake-timeout %v", waited, bigHandshake)
	}

	// Each first client really waited on the layout, many times the
	// timeout, and was not dropped.
	stop()
	ds := closedDurations(t, log.String())
	for _, name := range []string{"", "fat", tag} {
		if len(ds[name]) == 0 {
			t.Errorf("no connection to export %q in the log", name)
			continue
		}
		first := ds[name][0]
		t.Logf("export %q: first connection lasted %v (handshake timeout %v)", name, first, bigHandshake)
		if first < bigMinWait {
			t.Errorf("export %q: its first connection lasted %v, under %v: the layout did not outlast the handshake timeout, so this shows nothing (make the tree bigger)",
				name, first, bigMinWait)
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
