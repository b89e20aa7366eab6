package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// nbdInfo is the part of `nbdinfo --json` the tests read.
type nbdInfo struct {
	Exports []struct {
		Name        string `json:"export-name"`
		Description string `json:"description"`
		Size        int64  `json:"export-size"`
		ReadOnly    bool   `json:"is_read_only"`
		MultiConn   bool   `json:"can_multi_conn"`
		BlockMin    int64  `json:"block_size_minimum"`
		BlockPref   int64  `json:"block_size_preferred"`
		BlockMax    int64  `json:"block_size_maximum"`
	} `json:"exports"`
}

func TestServeWithRealClients(t *testing.T) {
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	testutil.NeedTool(t, "qemu-img", "qemu-utils")
	testutil.NeedTool(t, "qemu-io", "qemu-utils")
	repo := richRepo(t)
	commit := testutil.Git(t, repo, "rev-parse", "main")
	sock, stop := startServe(t, "--format", "fat", repo, "main")
	want := map[string][]byte{
		"":    buildImage(t, "fat", repo, "main"),
		"fat": buildImage(t, "fat", repo, "main"),
		"tar": buildImage(t, "tar", repo, "main"),
	}
	for name, img := range want {
		t.Run("export="+name, func(t *testing.T) {
			uri := nbdURI(sock, name)
			var info nbdInfo
			if err := json.Unmarshal(testutil.Run(t, "nbdinfo", "--json", uri), &info); err != nil {
				t.Fatal(err)
			}
			e := info.Exports[0]
			if e.Size != int64(len(img)) || !e.ReadOnly || !e.MultiConn {
				t.Errorf("nbdinfo: size %d read-only %v multi-conn %v; want size %d, both true", e.Size, e.ReadOnly, e.MultiConn, len(img))
			}
			if !strings.Contains(e.Description, commit) {
				t.Errorf("description %q does not name commit %s", e.Description, commit)
			}
			if e.BlockMin < 1 || e.BlockPref < 512 || e.BlockMax < e.BlockPref {
				t.Errorf("block sizes min %d pref %d max %d", e.BlockMin, e.BlockPref, e.BlockMax)
			}
			out := filepath.Join(t.TempDir(), "copy.img")
			testutil.Run(t, "nbdcopy", "--connections=4", "-T", "4", uri, out)
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, img) {
				t.Fatalf("nbdcopy of export %q differs from gitblk build", name)
			}
			ref := filepath.Join(t.TempDir(), "build.img")
			if err := os.WriteFile(ref, img, 0o644); err != nil {
				t.Fatal(err)
			}
			testutil.Run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", ref, "nbd+unix:///"+name+"?socket="+sock)
			// Odd offsets and lengths: qemu-io prints the bytes it read.
			for _, r := range [][2]int64{{1, 1}, {511, 3}, {4095, 4098}, {int64(len(img)) - 7, 7}} {
				dump := string(testutil.Run(t, "qemu-io", "-r", "-f", "raw", "-c",
					"read -v "+itoa(r[0])+" "+itoa(r[1]), "nbd+unix:///"+name+"?socket="+sock))
				if got := parseQemuIODump(dump); !bytes.Equal(got, img[r[0]:r[0]+r[1]]) {
					t.Errorf("qemu-io read %d+%d: got %x want %x", r[0], r[1], got, img[r[0]:r[0]+r[1]])
				}
			}
		})
	}
	// The FAT export has free space: nbdinfo --map shows a hole.
	mapOut := string(testutil.Run(t, "nbdinfo", "--map", nbdURI(sock, "fat")))
	if !strings.Contains(mapOut, "hole") {
		t.Errorf("nbdinfo --map shows no hole in the FAT export:\n%s", mapOut)
	}
	list := string(testutil.Run(t, "nbdinfo", "--list", "--json", "nbd+unix:///?socket="+sock))
	for _, name := range []string{`"tar"`, `"fat"`} {
		if !strings.Contains(list, name) {
			t.Errorf("nbdinfo --list lacks %s:\n%s", name, list)
		}
	}
	stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket %s left behind after exit: %v", sock, err)
	}
}

// parseQemuIODump extracts the bytes of `qemu-io -c 'read -v'` output.
func parseQemuIODump(out string) []byte {
	var b []byte
	for _, line := range strings.Split(out, "\n") {
		// 00000000:  4d 5a 90 00 ...  ascii
		colon := strings.Index(line, ":  ")
		if colon != 8 {
			continue
		}
		for _, f := range strings.Fields(line[colon+1:]) {
			if len(f) != 2 {
				break
			}
			var v byte
			ok := true
			for _, c := range []byte(f) {
				switch {
				case c >= '0' && c <= '9':
					v = v<<4 | (c - '0')
				case c >= 'a' && c <= 'f':
					v = v<<4 | (c - 'a' + 10)
				default:
					ok = false
				}
			}
			if !ok {
				break
			}
			b = append(b, v)
		}
	}
	return b
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestServeMoreRefs(t *testing.T) {
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	repo := newRepo(t, map[string]string{"v.txt": "one\n"})
	testutil.Git(t, repo, "tag", "v1")
	commitFiles(t, repo, map[string]string{"v.txt": "two, longer\n"}, "two")
	testutil.Git(t, repo, "tag", "v2")
	sock, _ := startServe(t, "--refs", "refs/tags/*", repo, "main")
	list := string(testutil.Run(t, "nbdinfo", "--list", "--json", "nbd+unix:///?socket="+sock))
	for _, name := range []string{"refs/tags/v1", "refs/tags/v2"} {
		if !strings.Contains(list, `"`+name+`"`) {
			t.Errorf("--list lacks %s:\n%s", name, list)
		}
	}
	for _, c := range []struct{ name, ref, format string }{
		{"refs/tags/v1", "v1", "tar"},
		{"refs/tags/v1:fat", "v1", "fat"},
		{"refs/tags/v2:tar", "v2", "tar"},
	} {
		out := filepath.Join(t.TempDir(), "x.img")
		testutil.Run(t, "nbdcopy", nbdURI(sock, c.name), out)
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, buildImage(t, c.format, repo, c.ref)) {
			t.Errorf("export %q differs from gitblk build --format %s %s", c.name, c.format, c.ref)
		}
	}
	// Names outside the grammar or the patterns are unknown exports.
	// Revision syntax would reach commits no served ref names.
	for _, name := range []string{"refs/heads/main", "v1", "refs/tags/v1:iso", "refs/tags/nope",
		"refs/tags/v2~1", "refs/tags/v2^", "refs/tags/v2~1:tar", "refs/tags/v2@{0}"} {
		cmd := exec.Command("nbdinfo", nbdURI(sock, name))
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("export %q was served:\n%s", name, out)
		}
	}
}
