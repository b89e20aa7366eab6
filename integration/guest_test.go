package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// Guest boot parameters.
const (
	// guestBootTimeout only stops a hung QEMU; a boot takes seconds.
	guestBootTimeout = 5 * time.Minute
	guestMemory      = "512"
	guestBeginMarker = "==GITBLK-BEGIN"
	guestEndMarker   = "==GITBLK-END=="
	guestErrorPrefix = "GITBLK-ERROR:"
	// prepareSkipStatus is prepare.sh's exit status when the kernel package
	// cannot be fetched.
	prepareSkipStatus = 3
	// guestBinarySize is the size of the test's binary file: a few MiB, not a
	// multiple of any block or cluster size.
	guestBinarySize = 3<<20 + 12345
)

// guestFiles is the tree the guest reads: nested directories, long and
// non-ASCII names, a binary file and empty files. Names stay legal and
// distinct on FAT (no case collisions, no `"*/:<>?\|`).
func guestFiles() map[string]string {
	rng := rand.New(rand.NewPCG(1, 2))
	bin := make([]byte, guestBinarySize)
	for i := range bin {
		bin[i] = byte(rng.Uint32())
	}
	long := strings.Repeat("a-rather-long-file-name-", 6) + "end.txt" // > 100 bytes: a pax path in tar
	return map[string]string{
		"README.md":            "# site\n",
		"empty":                "",
		"dir/empty-too":        "",
		"a/b/c/d/e/f/deep.txt": "deep\n",
		"a/b/sibling.txt":      "sibling\n",
		"a/" + long:            "long name\n",
		"ünïcödé/日本語のファイル.txt":             "non-ASCII\n",
		"ünïcödé/Ça va — déjà vu.md":       "accents and a dash\n",
		"assets/blob.bin":                  string(bin),
		"assets/Mixed Case Name.With.Dots": "mixed\n",
		"x/1.txt":                          strings.Repeat("0123456789abcdef", 4096) + "tail",
	}
}

// gitFileHashes returns path -> sha256 hex of every blob in repo at ref,
// computed from `git ls-tree -r` and `git cat-file`.
func gitFileHashes(t *testing.T, repo, ref string) map[string]string {
	t.Helper()
	out, err := testutil.GitOutput(repo, nil, "ls-tree", "-r", "-z", ref)
	if err != nil {
		t.Fatalf("git ls-tree: %v", err)
	}
	hashes := map[string]string{}
	for _, rec := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		meta, path, ok := strings.Cut(rec, "\t")
		if !ok {
			t.Fatalf("git ls-tree: bad record %q", rec)
		}
		fields := strings.Fields(meta) // mode type id
		if len(fields) != 3 || fields[1] != "blob" {
			t.Fatalf("git ls-tree: unexpected entry %q (the guest test wants regular files only)", rec)
		}
		content, err := testutil.GitOutput(repo, nil, "cat-file", "blob", fields[2])
		if err != nil {
			t.Fatalf("git cat-file blob %s: %v", fields[2], err)
		}
		sum := sha256.Sum256(content)
		hashes[path] = hex.EncodeToString(sum[:])
	}
	return hashes
}

// prepareGuest runs guest/prepare.sh and returns the kernel and initramfs.
func prepareGuest(t *testing.T) (kernel, initrd string) {
	t.Helper()
	for prog, pkg := range map[string]string{"apt-get": "apt", "dpkg-deb": "dpkg", "cpio": "cpio", "flock": "util-linux"} {
		testutil.NeedTool(t, prog, pkg)
	}
	cmd := exec.Command("bash", filepath.Join("guest", "prepare.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == prepareSkipStatus {
			t.Skipf("the Debian kernel package linux-image-*-cloud-amd64 cannot be fetched here, so no guest can boot: %s",
				strings.TrimSpace(stderr.String()))
		}
		t.Fatalf("guest/prepare.sh: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "kernel="); ok {
			kernel = v
		}
		if v, ok := strings.CutPrefix(line, "initrd="); ok {
			initrd = v
		}
	}
	if kernel == "" || initrd == "" {
		t.Fatalf("guest/prepare.sh printed no kernel= and initrd= lines:\n%s\n%s", out, stderr.String())
	}
	return kernel, initrd
}

// bootGuest boots the guest on export of the NBD server at sockPath in the
// given mode (tar or fat) and returns QEMU's console output.
func bootGuest(t *testing.T, qemu, kernel, initrd, sockPath, export, mode string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), guestBootTimeout)
	defer cancel()
	drive := fmt.Sprintf("file=nbd:unix:%s:exportname=%s,format=raw,if=virtio,readonly=on", sockPath, export)
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-m", guestMemory, "-nographic", "-no-reboot", "-nic", "none",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet loglevel=1 panic=-1 gitblk.mode="+mode,
		"-drive", drive)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("QEMU did not power off within %v\nconsole:\n%s", guestBootTimeout, out)
	}
	if err != nil {
		t.Fatalf("QEMU: %v\nconsole:\n%s", err, out)
	}
	return string(out)
}

// parseGuestSums extracts path -> sha256 from the guest's console output:
// lines "HEX  ./PATH" between the markers.
func parseGuestSums(console string) (map[string]string, error) {
	sums := map[string]string{}
	inside, ended := false, false
	sc := bufio.NewScanner(strings.NewReader(console))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.Contains(line, guestErrorPrefix):
			return nil, fmt.Errorf("guest reported: %s", line[strings.Index(line, guestErrorPrefix):])
		case strings.Contains(line, guestBeginMarker):
			inside = true
		case !inside:
		case strings.Contains(line, guestEndMarker):
			inside, ended = false, true
		default:
			sum, path, ok := strings.Cut(line, "  ./")
			if !ok || len(sum) != sha256.Size*2 {
				return nil, fmt.Errorf("unexpected guest line %q", line)
			}
			sums[path] = sum
		}
	}
	if !ended {
		return nil, errors.New("no complete " + guestBeginMarker + " ... " + guestEndMarker + " block in the console output")
	}
	return sums, nil
}

// TestGuestReadsExport boots a Linux guest under QEMU with gitblk serve as its
// virtio disk, once per format (and FAT with 4 KiB sectors), and checks the guest reads every file of the
// commit with git's exact content and no extra file.
func TestGuestReadsExport(t *testing.T) {
	qemu := testutil.NeedTool(t, "qemu-system-x86_64", "qemu-system-x86")
	kernel, initrd := prepareGuest(t)
	repo := newRepo(t, guestFiles())
	want := gitFileHashes(t, repo, "main")

	for _, tc := range []struct {
		name, export string
		serveArgs    []string
	}{
		{"tar", "tar", nil},
		{"fat", "fat", nil},
		// 4 KiB FAT sectors are the option meant for Mirage on Xen.
		{"fat-4k-sectors", "fat", []string{"--sector-size", "4096"}},
		// FAT32 is what a tree over FAT16's limit gets; force it here.
		{"fat32", "fat", []string{"--fat-type", "32"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock, _ := startServe(t, append(tc.serveArgs, repo, "main")...)
			console := bootGuest(t, qemu, kernel, initrd, sock, tc.export, tc.export)
			got, err := parseGuestSums(console)
			if err != nil {
				t.Fatalf("%v\nconsole:\n%s", err, console)
			}
			compareSums(t, want, got)
		})
	}
}

// compareSums reports every path missing, extra or with different content.
func compareSums(t *testing.T, want, got map[string]string) {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		w, inWant := want[p]
		g, inGot := got[p]
		switch {
		case !inGot:
			t.Errorf("%q: in git, not seen by the guest", p)
		case !inWant:
			t.Errorf("%q: seen by the guest, not in git", p)
		case w != g:
			t.Errorf("%q: guest sha256 %s, git %s", p, g, w)
		}
	}
	if !t.Failed() {
		t.Logf("guest read %d files, all equal to git's", len(got))
	}
}

// TestParseGuestSums checks the console parser on what QEMU really prints:
// CRLF lines, terminal escapes glued to the begin marker, kernel lines
// outside the markers, and the guest's error report.
func TestParseGuestSums(t *testing.T) {
	const sumA = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
	const sumB = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	good := "SeaBIOS\r\nBooting from ROM..\x1bc\x1b[?7l.\r==GITBLK-BEGIN mode=fat==\r\n" +
		sumA + "  ./dir/a b.txt\r\n" + sumB + "  ./ünï/empty\r\n==GITBLK-END==\r\n[    4.1] reboot: Power down\r\n"
	got, err := parseGuestSums(good)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"dir/a b.txt": sumA, "ünï/empty": sumB}
	if len(got) != len(want) || got["dir/a b.txt"] != sumA || got["ünï/empty"] != sumB {
		t.Errorf("parsed %q, want %q", got, want)
	}

	for name, console := range map[string]string{
		"error before begin": "GITBLK-ERROR: insmod virtio_blk\r\n==GITBLK-END==\r\n",
		"error inside":       "==GITBLK-BEGIN mode=tar==\r\nGITBLK-ERROR: tar -xf /dev/vda\r\n==GITBLK-END==\r\n",
		"no end marker":      "==GITBLK-BEGIN mode=tar==\r\n" + sumA + "  ./a\r\n",
		"nothing":            "Kernel panic - not syncing\r\n",
		"garbled line":       "==GITBLK-BEGIN mode=tar==\r\n" + sumA[:10] + "  ./a\r\n==GITBLK-END==\r\n",
	} {
		if got, err := parseGuestSums(console); err == nil {
			t.Errorf("%s: parsed %q, want an error", name, got)
		}
	}
}
