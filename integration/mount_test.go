package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// mountTimeout bounds waiting for a mount to appear or go; not a speed check.
const mountTimeout = 30 * time.Second

// isMounted reports whether dir is a mount point, from /proc/self/mountinfo.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// startMount runs `gitblk mount REPO REF DIR` and waits for the mount.
func startMount(t *testing.T, repo, ref string) (dir string, cmd *exec.Cmd, exited chan error, log *testutil.LogBuffer) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse on this machine: FUSE mounts cannot exist here (%v)", err)
	}
	testutil.NeedTool(t, "fusermount3", "fuse3")
	dir = t.TempDir()
	log = &testutil.LogBuffer{}
	cmd = exec.Command(gitblkBin, "mount", repo, ref, dir)
	cmd.Stderr, cmd.Stdout = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if isMounted(t, dir) {
			exec.Command("fusermount3", "-u", "-z", dir).Run()
		}
		cmd.Process.Kill()
	})
	deadline := time.Now().Add(mountTimeout)
	for !isMounted(t, dir) {
		select {
		case err := <-exited:
			t.Fatalf("gitblk mount exited: %v\n%s", err, log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("not mounted after %v:\n%s", mountTimeout, log.String())
		}
	}
	return dir, cmd, exited, log
}

// waitExit waits for the mount process to exit 0 and the mount to be gone.
func waitExit(t *testing.T, dir string, exited chan error, log *testutil.LogBuffer) {
	t.Helper()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("gitblk mount exit: %v\n%s", err, log.String())
		}
	case <-time.After(mountTimeout):
		t.Fatalf("gitblk mount still running:\n%s", log.String())
	}
	if isMounted(t, dir) {
		t.Errorf("%s still mounted after exit", dir)
	}
}

func TestMountImagesEqualBuild(t *testing.T) {
	repo := richRepo(t)
	dir, cmd, exited, log := startMount(t, repo, "main")
	for _, f := range []string{"tar", "fat"} {
		got, err := os.ReadFile(filepath.Join(dir, "image."+f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, buildImage(t, f, repo, "main")) {
			t.Errorf("image.%s differs from gitblk build --format %s", f, f)
		}
	}
	commit, err := os.ReadFile(filepath.Join(dir, "COMMIT"))
	if err != nil || !strings.HasPrefix(string(commit), testutil.Git(t, repo, "rev-parse", "main")+"\n") {
		t.Errorf("COMMIT = %q, %v", commit, err)
	}
	// tree/ shows everything, export-ignored files too.
	if data, err := os.ReadFile(filepath.Join(dir, "tree", "private", "secret.txt")); err != nil || string(data) != "not exported\n" {
		t.Errorf("tree/private/secret.txt = %q, %v", data, err)
	}

	// The loopback workflow of README "Debugging locally".
	if _, err := exec.LookPath("losetup"); err == nil {
		testutil.NeedTool(t, "fsck.fat", "dosfstools")
		out, err := exec.Command("losetup", "-r", "-f", "--show", filepath.Join(dir, "image.fat")).CombinedOutput()
		if err != nil {
			t.Skipf("losetup cannot attach a loop device here: %v\n%s", err, out)
		}
		loop := strings.TrimSpace(string(out))
		defer exec.Command("losetup", "-d", loop).Run()
		dev, err := os.ReadFile(loop)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dev, buildImage(t, "fat", repo, "main")) {
			t.Errorf("%s differs from gitblk build --format fat", loop)
		}
		if b, err := exec.Command("fsck.fat", "-n", loop).CombinedOutput(); err != nil {
			t.Errorf("fsck.fat -n %s: %v\n%s", loop, err, b)
		}
		exec.Command("losetup", "-d", loop).Run()
	}

	// Unmount by signal.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, dir, exited, log)
}

func TestMountUnmountByFusermount(t *testing.T) {
	repo := newRepo(t, map[string]string{"a.txt": "a\n"})
	dir, _, exited, log := startMount(t, repo, "main")
	if out, err := exec.Command("fusermount3", "-u", dir).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v\n%s", err, out)
	}
	waitExit(t, dir, exited, log)
}
