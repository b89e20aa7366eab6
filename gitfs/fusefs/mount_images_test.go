package fusefs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/imager"
)

// mntNeedTool fails the test when a tool is missing, naming its package.
func mntNeedTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s not found: install the Debian package %s", tool, pkg)
	}
}

// mntRunTool runs a command and returns its stdout, failing on error.
func mntRunTool(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// TestMountRealImages mounts the tar and FAT images imager builds of a
// repository and reads them with tools nobody here wrote: bsdtar on
// image.tar, fsck.fat and mtools on image.fat, and fsck.fat again on a
// loop device attached to image.fat.
func TestMountRealImages(t *testing.T) {
	mntNeedTool(t, "bsdtar", "libarchive-tools")
	mntNeedTool(t, "fsck.fat", "dosfstools")
	mntNeedTool(t, "mcopy", "mtools")
	mntNeedTool(t, "losetup", "mount")
	r := newMntRepo(t)
	cfg := mntConfig(t, r, nil)
	for name, format := range map[string]imager.Format{"image.tar": imager.FormatTar, "image.fat": imager.FormatFAT} {
		img, warnings, err := imager.Build(r.tree, r.blobs, imager.Options{Format: format})
		if err != nil {
			t.Fatalf("building %s: %v", name, err)
		}
		for _, w := range warnings {
			t.Logf("%s: %s", name, w)
		}
		cfg.Images[name] = img
	}
	dir, _ := mountForTest(t, cfg)
	tarPath, fatPath := filepath.Join(dir, "image.tar"), filepath.Join(dir, "image.fat")
	want := mntGit(t, r.dir, "cat-file", "-p", "HEAD:a/b/c/deep.txt")

	if list := mntRunTool(t, "bsdtar", "-tvf", tarPath); !bytes.Contains(list, []byte("a/b/c/deep.txt")) {
		t.Errorf("bsdtar -tvf does not list a/b/c/deep.txt:\n%s", list)
	}
	if got := mntRunTool(t, "bsdtar", "-xOf", tarPath, "a/b/c/deep.txt"); !bytes.Equal(got, want) {
		t.Errorf("bsdtar -xOf a/b/c/deep.txt = %q, want %q", got, want)
	}

	mntRunTool(t, "fsck.fat", "-n", fatPath)
	if got := mntRunTool(t, "mcopy", "-n", "-i", fatPath, "::/a/b/c/deep.txt", "-"); !bytes.Equal(got, want) {
		t.Errorf("mcopy ::/a/b/c/deep.txt = %q, want %q", got, want)
	}

	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices here: %v", err)
	}
	dev := strings.TrimSpace(string(mntRunTool(t, "losetup", "-r", "-f", "--show", fatPath)))
	t.Cleanup(func() { mntRunTool(t, "losetup", "-d", dev) })
	mntRunTool(t, "fsck.fat", "-n", dev)
}
