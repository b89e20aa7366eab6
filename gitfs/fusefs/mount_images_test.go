package fusefs

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/testutil"
)

// TestMountRealImages mounts the tar and FAT images imager builds of a
// repository and reads them with tools nobody here wrote: bsdtar on
// image.tar, fsck.fat and mtools on image.fat, and fsck.fat again on a
// loop device attached to image.fat.
func TestMountRealImages(t *testing.T) {
	testutil.NeedTool(t, "bsdtar", "libarchive-tools")
	testutil.NeedTool(t, "fsck.fat", "dosfstools")
	testutil.NeedTool(t, "mcopy", "mtools")
	testutil.NeedTool(t, "losetup", "mount")
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
	want := testutil.GitBytes(t, r.dir, "cat-file", "-p", "HEAD:a/b/c/deep.txt")

	if list := testutil.Run(t, "bsdtar", "-tvf", tarPath); !bytes.Contains(list, []byte("a/b/c/deep.txt")) {
		t.Errorf("bsdtar -tvf does not list a/b/c/deep.txt:\n%s", list)
	}
	if got := testutil.Run(t, "bsdtar", "-xOf", tarPath, "a/b/c/deep.txt"); !bytes.Equal(got, want) {
		t.Errorf("bsdtar -xOf a/b/c/deep.txt = %q, want %q", got, want)
	}

	testutil.Run(t, "fsck.fat", "-n", fatPath)
	if got := testutil.Run(t, "mcopy", "-n", "-i", fatPath, "::/a/b/c/deep.txt", "-"); !bytes.Equal(got, want) {
		t.Errorf("mcopy ::/a/b/c/deep.txt = %q, want %q", got, want)
	}

	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices here: %v", err)
	}
	dev := strings.TrimSpace(string(testutil.Run(t, "losetup", "-r", "-f", "--show", fatPath)))
	t.Cleanup(func() { testutil.Run(t, "losetup", "-d", dev) })
	testutil.Run(t, "fsck.fat", "-n", dev)
}
