package fusefs

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/testutil"
)

// mntCapSysAdmin is the bit of CAP_SYS_ADMIN in /proc/self/status's CapEff.
const mntCapSysAdmin = 21

// mntRequireFUSE skips the test when FUSE cannot be mounted here at all (no
// /dev/fuse, or no permission to mount), and fails it when a tool that the
// fuse3 package provides is missing.
func mntRequireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(devFUSE); err != nil {
		t.Skipf("no FUSE here: %v (the kernel or container provides no %s)", err, devFUSE)
	}
	fm, err := exec.LookPath("fusermount3")
	if err != nil {
		t.Fatalf("fusermount3 not found: install the Debian package fuse3")
	}
	if os.Geteuid() == 0 {
		if !mntHasCapSysAdmin(t) {
			t.Skip("mounting is not permitted: root without CAP_SYS_ADMIN")
		}
		return
	}
	st, err := os.Stat(fm)
	if err != nil || st.Mode()&os.ModeSetuid == 0 {
		t.Skipf("mounting is not permitted: not root and %s is not setuid", fm)
	}
	if err := syscall.Access(devFUSE, accessReadWrite); err != nil {
		t.Skipf("mounting is not permitted: %s is not readable and writable by uid %d: %v", devFUSE, os.Geteuid(), err)
	}
}

func mntHasCapSysAdmin(t *testing.T) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("reading capabilities: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("parsing CapEff %q: %v", v, err)
			}
			return caps&(1<<mntCapSysAdmin) != 0
		}
	}
	t.Fatal("no CapEff line in /proc/self/status")
	return false
}

// mntRepo is a git repository made for a test, and its commit as a Tree.
type mntRepo struct {
	dir    string
	commit string
	tree   *imager.Tree
	blobs  testutil.Blobs[imager.BlobID]
}

// Names that test what a filesystem must carry through.
var (
	mntLongName     = strings.Repeat("long-name-", 25) + "12345" // NAME_MAX (255) bytes
	mntNonASCIIName = "héllo wörld ✓ 日本.txt"
)

// newMntRepo makes a repository with nested directories, long and
// non-ASCII names, empty files, an executable, symlinks and a submodule,
// and reads its HEAD commit back with git ls-tree and git cat-file.
func newMntRepo(t *testing.T) *mntRepo {
	t.Helper()
	dir := t.TempDir()
	testutil.GitBytes(t, dir, "init", "-q", "-b", "main")
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 300<<10+123) // spans several FUSE reads
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	files := map[string][]byte{
		"README.md":             []byte("# test\n"),
		"empty":                 nil,
		"a/b/c/deep.txt":        []byte("deep\n"),
		"a/b/c/empty-too":       nil,
		"a/b/sibling.txt":       []byte("sibling\n"),
		"a/x.txt":               []byte("x\n"),
		"a.txt":                 []byte("a dot txt, sorts before a/ in git\n"),
		"dir with spaces/f":     []byte("spaces\n"),
		"big.bin":               big,
		mntNonASCIIName:         []byte("non-ascii\n"),
		"nested/" + mntLongName: []byte("long\n"),
		"bin/run.sh":            []byte("#!/bin/sh\necho hi\n"),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "bin/run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"link": "a/b/c/deep.txt", "a/b/up": "../../README.md", "dangling": "../nowhere"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.GitBytes(t, dir, "add", "-A")
	testutil.GitBytes(t, dir, "update-index", "--add", "--cacheinfo", "160000,0123456789abcdef0123456789abcdef01234567,sub")
	testutil.GitBytes(t, dir, "commit", "-q", "-m", "test")
	r := &mntRepo{dir: dir, commit: strings.TrimSpace(string(testutil.GitBytes(t, dir, "rev-parse", "HEAD")))}
	r.tree, r.blobs = mntReadGitTree(t, dir, r.commit)
	return r
}

// mntReadGitTree lists commit's tree with `git ls-tree -r -t -l -z` and reads
// every blob with `git cat-file`.
func mntReadGitTree(t *testing.T, dir, commit string) (*imager.Tree, testutil.Blobs[imager.BlobID]) {
	t.Helper()
	ct, err := strconv.ParseInt(strings.TrimSpace(string(testutil.GitBytes(t, dir, "show", "-s", "--format=%ct", commit))), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	tree := &imager.Tree{CommitID: commit, Time: time.Unix(ct, 0)}
	blobs := testutil.Blobs[imager.BlobID]{}
	out := testutil.GitBytes(t, dir, "ls-tree", "-r", "-t", "-l", "-z", commit)
	for rec := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		meta, path, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 4 {
			t.Fatalf("bad ls-tree record %q", rec)
		}
		var id imager.BlobID
		if _, err := hex.Decode(id[:], []byte(f[2])); err != nil {
			t.Fatalf("bad object id in %q: %v", rec, err)
		}
		e := imager.Entry{Path: path, Blob: id}
		switch f[0] {
		case "040000":
			e.Kind = imager.KindDir
		case "160000":
			e.Kind = imager.KindSubmodule
		case "100644", "100755", "120000":
			data := testutil.GitBytes(t, dir, "cat-file", "blob", f[2])
			blobs[id] = data
			e.Size = int64(len(data))
			e.Kind = map[string]imager.Kind{"100644": imager.KindFile, "100755": imager.KindExecutable, "120000": imager.KindSymlink}[f[0]]
			if e.Kind == imager.KindSymlink {
				e.Target = string(data)
			}
		default:
			t.Fatalf("unexpected mode in %q", rec)
		}
		tree.Entries = append(tree.Entries, e)
	}
	return tree, blobs
}

// mntBytesImage is an Image over bytes in memory.
type mntBytesImage []byte

func (b mntBytesImage) Size() int64 { return int64(len(b)) }
func (b mntBytesImage) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(b).ReadAt(p, off)
}

// mntLayout makes a Layout of a few MiB from data, zero and blob extents.
func mntLayout(t *testing.T, r *mntRepo) *imager.Layout {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	var b imager.Builder
	for i := range 5 {
		data := make([]byte, 100_000+i*77_777)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		b.Data(fmt.Sprintf("random %d", i), data)
		b.Zeros("gap", int64(300_000+i*4099))
	}
	for _, e := range r.tree.Entries {
		if e.Kind == imager.KindFile && e.Size > 0 {
			b.Blob(e.Path, e.Blob, 0, e.Size)
		}
	}
	b.Zeros("tail", 1<<20)
	return b.Layout(r.blobs)
}

// mntImageBytes reads a whole Image.
func mntImageBytes(t *testing.T, img imager.Image) []byte {
	t.Helper()
	p := make([]byte, img.Size())
	if _, err := img.ReadAt(p, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return p
}

// mountForTest mounts cfg on a fresh directory and unmounts it at the end.
func mountForTest(t *testing.T, cfg Config) (string, *Mounted) {
	t.Helper()
	mntRequireFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := Mount(dir, cfg)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
		m.Wait()
		if mntIsMounted(t, dir) {
			t.Errorf("%s still mounted after Unmount", dir)
		}
	})
	return dir, m
}

func mntConfig(t *testing.T, r *mntRepo, log *slog.Logger) Config {
	return Config{
		CommitID: r.commit,
		Ref:      "refs/heads/main",
		Time:     r.tree.Time,
		Tree:     r.tree,
		Blobs:    r.blobs,
		Images: map[string]imager.Image{
			"image.tar": mntLayout(t, r),
			"image.fat": mntBytesImage(bytes.Repeat([]byte("gitblk!\x00"), 1<<17)),
		},
		Logger: log,
	}
}

// mntIsMounted reports whether dir is a mount point, from /proc/self/mountinfo.
func mntIsMounted(t *testing.T, dir string) bool {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := isMountPoint(real)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestMountTree(t *testing.T) {
	r := newMntRepo(t)
	dir, _ := mountForTest(t, mntConfig(t, r, nil))
	mtime := r.tree.Time

	if fstype, source, opts := mountinfoOf(t, dir); fstype != "fuse.gitblk" || source != "gitblk:"+r.commit ||
		!slices.Contains(strings.Split(opts, ","), "ro") {
		t.Errorf("mounted as %s from %s with options %s, want fuse.gitblk from gitblk:%s, ro", fstype, source, opts, r.commit)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(filepath.Join(dir, "tree", "a"), &sfs); err != nil || sfs.Namelen != mntNameMax || sfs.Flags&unix.ST_RDONLY == 0 {
		t.Errorf("statfs: %v, name length %d, flags %#x; want %d and ST_RDONLY", err, sfs.Namelen, sfs.Flags, mntNameMax)
	}
	rootNames := mntDirNames(t, dir)
	if want := []string{"COMMIT", "image.fat", "image.tar", "tree"}; !slices.Equal(rootNames, want) {
		t.Errorf("root lists %q, want %q", rootNames, want)
	}
	commit, err := os.ReadFile(filepath.Join(dir, "COMMIT"))
	if err != nil {
		t.Fatal(err)
	}
	if want := r.commit + "\nrefs/heads/main\n"; string(commit) != want {
		t.Errorf("COMMIT = %q, want %q", commit, want)
	}

	// Every entry of git's listing is there, with the right type, mode,
	// size, mtime and content; nothing else is.
	root := filepath.Join(dir, "tree")
	seen := map[string]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			rel, _ := filepath.Rel(root, p)
			seen[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking the mount: %v", err)
	}
	for _, e := range r.tree.Entries {
		if !seen[e.Path] {
			t.Errorf("%s missing from the mount", e.Path)
		}
		delete(seen, e.Path)
		p := filepath.Join(root, e.Path)
		st, err := os.Lstat(p)
		if err != nil {
			t.Errorf("lstat %s: %v", e.Path, err)
			continue
		}
		if !st.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", e.Path, st.ModTime(), mtime)
		}
		wantMode := map[imager.Kind]os.FileMode{
			imager.KindFile: 0o644, imager.KindExecutable: 0o755, imager.KindDir: fs.ModeDir | 0o755,
			imager.KindSubmodule: fs.ModeDir | 0o755, imager.KindSymlink: fs.ModeSymlink | 0o777,
		}[e.Kind]
		if st.Mode() != wantMode {
			t.Errorf("%s (%s): mode %v, want %v", e.Path, e.Kind, st.Mode(), wantMode)
		}
		switch e.Kind {
		case imager.KindFile, imager.KindExecutable:
			got, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("reading %s: %v", e.Path, err)
				continue
			}
			want := testutil.GitBytes(t, r.dir, "cat-file", "-p", e.Blob.String())
			if !bytes.Equal(got, want) {
				t.Errorf("%s: content differs from git cat-file -p (%d bytes, want %d)", e.Path, len(got), len(want))
			}
			if st.Size() != int64(len(want)) {
				t.Errorf("%s: size %d, want %d", e.Path, st.Size(), len(want))
			}
		case imager.KindSymlink:
			got, err := os.Readlink(p)
			if err != nil {
				t.Errorf("readlink %s: %v", e.Path, err)
				continue
			}
			if want := string(testutil.GitBytes(t, r.dir, "cat-file", "-p", e.Blob.String())); got != want {
				t.Errorf("%s: target %q, want %q", e.Path, got, want)
			}
			if st.Size() != int64(len(got)) {
				t.Errorf("%s: size %d, want %d", e.Path, st.Size(), len(got))
			}
		case imager.KindSubmodule:
			if names := mntDirNames(t, p); len(names) != 0 {
				t.Errorf("submodule %s lists %q, want nothing", e.Path, names)
			}
		case imager.KindDir:
			var want []string
			prefix := e.Path + "/"
			for _, c := range r.tree.Entries {
				if rest, ok := strings.CutPrefix(c.Path, prefix); ok && !strings.Contains(rest, "/") {
					want = append(want, rest)
				}
			}
			slices.Sort(want)
			if got := mntDirNames(t, p); !slices.Equal(got, want) {
				t.Errorf("%s lists %q, want %q", e.Path, got, want)
			}
		}
	}
	for p := range seen {
		t.Errorf("%s is in the mount but not in the tree", p)
	}
	for _, name := range []string{"sub", "a/b/c/deep.txt", "bin/run.sh", "link", mntNonASCIIName, "nested/" + mntLongName} {
		if _, ok := seen[name]; ok || !slices.ContainsFunc(r.tree.Entries, func(e imager.Entry) bool { return e.Path == name }) {
			t.Errorf("test repository lacks %s: the test proves less than it says", name)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "link")); err != nil {
		t.Errorf("following tree/link: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "no-such-file")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lstat of a missing name: %v, want ENOENT", err)
	}
}

func mntDirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestMountImages(t *testing.T) {
	r := newMntRepo(t)
	cfg := mntConfig(t, r, nil)
	dir, _ := mountForTest(t, cfg)
	for name, img := range cfg.Images {
		want := mntImageBytes(t, img)
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != img.Size() || st.Mode() != 0o444 || !st.ModTime().Equal(r.tree.Time) {
			t.Errorf("%s: size %d mode %v mtime %v, want %d -r--r--r-- %v", name, st.Size(), st.Mode(), st.ModTime(), img.Size(), r.tree.Time)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: sequential read differs from the Image's bytes", name)
		}

		// Eight readers at once at random offsets, through separate opens.
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			wg.Go(func() {
				f, err := os.Open(p)
				if err != nil {
					errs <- err
					return
				}
				defer f.Close()
				rng := rand.New(rand.NewPCG(uint64(g), 99))
				for range 50 {
					off := rng.Int64N(int64(len(want)))
					buf := make([]byte, 1+rng.IntN(300_000))
					n, err := f.ReadAt(buf, off)
					if err != nil && err != io.EOF {
						errs <- fmt.Errorf("%s: ReadAt(%d, %d): %w", name, len(buf), off, err)
						return
					}
					if end := off + int64(len(buf)); n != len(buf) && end <= int64(len(want)) {
						errs <- fmt.Errorf("%s: short read %d of %d at %d", name, n, len(buf), off)
						return
					}
					if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
						errs <- fmt.Errorf("%s: bytes at %d+%d differ from the Image's", name, off, n)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}

// TestMountReadOnly checks that every kind of write fails with EROFS, both
// on the read-only mount and with the kernel's check taken away (the nodes
// refuse on their own).
func TestMountReadOnly(t *testing.T) {
	for _, writable := range []bool{false, true} {
		t.Run(fmt.Sprintf("kernel-rw=%v", writable), func(t *testing.T) {
			r := newMntRepo(t)
			mountTestWritable = writable
			dir, _ := mountForTest(t, mntConfig(t, r, nil))
			mountTestWritable = false
			if _, _, opts := mountinfoOf(t, dir); slices.Contains(strings.Split(opts, ","), "ro") == writable {
				t.Fatalf("mount options %s: the kernel's read-only check is not what this subtest means", opts)
			}
			tree := filepath.Join(dir, "tree")
			file := filepath.Join(tree, "README.md")
			before, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			ops := map[string]func() error{
				"create in tree":   func() error { f, err := os.Create(filepath.Join(tree, "new")); mntClose(f); return err },
				"create at root":   func() error { f, err := os.Create(filepath.Join(dir, "new")); mntClose(f); return err },
				"create existing":  func() error { f, err := os.Create(file); mntClose(f); return err },
				"open for writing": func() error { f, err := os.OpenFile(file, os.O_WRONLY, 0); mntClose(f); return err },
				"open image rw": func() error {
					f, err := os.OpenFile(filepath.Join(dir, "image.tar"), os.O_RDWR, 0)
					mntClose(f)
					return err
				},
				"write file":            func() error { return os.WriteFile(file, []byte("x"), 0o644) },
				"write COMMIT":          func() error { return os.WriteFile(filepath.Join(dir, "COMMIT"), []byte("x"), 0o644) },
				"truncate":              func() error { return os.Truncate(file, 0) },
				"truncate image":        func() error { return os.Truncate(filepath.Join(dir, "image.fat"), 0) },
				"remove file":           func() error { return os.Remove(file) },
				"remove image":          func() error { return os.Remove(filepath.Join(dir, "image.tar")) },
				"remove symlink":        func() error { return os.Remove(filepath.Join(tree, "link")) },
				"rmdir":                 func() error { return syscall.Rmdir(filepath.Join(tree, "a/b/c")) },
				"rmdir submodule":       func() error { return syscall.Rmdir(filepath.Join(tree, "sub")) },
				"mkdir":                 func() error { return os.Mkdir(filepath.Join(tree, "d"), 0o755) },
				"mkdir at root":         func() error { return os.Mkdir(filepath.Join(dir, "d"), 0o755) },
				"rename":                func() error { return os.Rename(file, filepath.Join(tree, "moved")) },
				"rename dir":            func() error { return os.Rename(filepath.Join(tree, "a"), filepath.Join(tree, "b2")) },
				"chmod":                 func() error { return os.Chmod(file, 0o600) },
				"chmod dir":             func() error { return os.Chmod(tree, 0o700) },
				"chown":                 func() error { return os.Lchown(file, 1, 1) },
				"chtimes":               func() error { return os.Chtimes(file, time.Now(), time.Now()) },
				"symlink":               func() error { return os.Symlink("README.md", filepath.Join(tree, "l2")) },
				"link":                  func() error { return os.Link(file, filepath.Join(tree, "h")) },
				"mknod fifo":            func() error { return unix.Mkfifo(filepath.Join(tree, "fifo"), 0o644) },
				"setxattr":              func() error { return unix.Setxattr(file, "user.x", []byte("y"), 0) },
				"removexattr":           func() error { return unix.Removexattr(file, "user.x") },
				"mntFallocate on image": func() error { return mntFallocate(filepath.Join(dir, "image.fat")) },
			}
			for name, op := range ops {
				if err := op(); !errors.Is(err, syscall.EROFS) {
					t.Errorf("%s: got %v, want EROFS", name, err)
				}
			}
			after, err := os.ReadFile(file)
			if err != nil || !bytes.Equal(before, after) {
				t.Errorf("README.md changed or unreadable after the writes: %q, %v", after, err)
			}
			if names := mntDirNames(t, tree); slices.ContainsFunc(names, func(n string) bool {
				return slices.Contains([]string{"new", "d", "moved", "l2", "h", "fifo", "b2"}, n)
			}) {
				t.Errorf("a write left a name behind: %q", names)
			}
		})
	}
}

func mntClose(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// mntFallocate opens name for writing and allocates space in it: the open
// is expected to fail with EROFS, and if it did not, fallocate must.
func mntFallocate(name string) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fallocate(int(f.Fd()), 0, 0, 4096)
}

// TestMountLoop attaches an image file to a loop device and reads the
// device back. (The image here is synthetic: whether a real FAT image
// passes fsck.fat through the loop device is for the integration tests.)
func TestMountLoop(t *testing.T) {
	r := newMntRepo(t)
	cfg := mntConfig(t, r, nil)
	dir, _ := mountForTest(t, cfg)
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Fatal("losetup not found: install the Debian package mount (util-linux)")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices here: %v", err)
	}
	for _, name := range []string{"image.tar", "image.fat"} {
		out, err := exec.Command("losetup", "-r", "-f", "--show", filepath.Join(dir, name)).CombinedOutput()
		if err != nil {
			t.Fatalf("losetup -r -f --show %s: %v\n%s", name, err, out)
		}
		dev := strings.TrimSpace(string(out))
		got, rerr := os.ReadFile(dev)
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
		if rerr != nil {
			t.Fatalf("reading %s: %v", dev, rerr)
		}
		if want := mntImageBytes(t, cfg.Images[name]); !bytes.Equal(got, want) {
			t.Errorf("%s through %s: %d bytes differing from the Image's %d", name, dev, len(got), len(want))
		}
	}
}

// mountFresh mounts a new test repository's tree on a fresh directory and
// checks the mount is there; the test unmounts it.
func mountFresh(t *testing.T) (string, *Mounted) {
	t.Helper()
	mntRequireFUSE(t)
	r := newMntRepo(t)
	dir := t.TempDir()
	m, err := Mount(dir, mntConfig(t, r, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !mntIsMounted(t, dir) {
		t.Fatalf("%s not in mountinfo after Mount", dir)
	}
	return dir, m
}

func TestMountFusermountUnmount(t *testing.T) {
	dir, m := mountFresh(t)
	if _, err := os.Stat(filepath.Join(dir, "tree", "README.md")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("fusermount3", "-u", dir).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v\n%s", err, out)
	}
	m.Wait()
	if mntIsMounted(t, dir) {
		t.Errorf("%s still mounted after fusermount3 -u", dir)
	}
	if err := m.Unmount(); err != nil {
		t.Errorf("Unmount after fusermount3 -u: %v", err)
	}
}

func TestMountUnmount(t *testing.T) {
	mntRequireFUSE(t)
	r := newMntRepo(t)
	dir := t.TempDir()
	m, err := Mount(dir, mntConfig(t, r, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := mntDirNames(t, filepath.Join(dir, "tree", "a")); len(got) == 0 {
		t.Error("tree/a is empty")
	}
	waited := make(chan struct{})
	go func() { m.Wait(); close(waited) }()
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	<-waited
	if mntIsMounted(t, dir) {
		t.Errorf("%s still mounted after Unmount", dir)
	}
	if names := mntDirNames(t, dir); len(names) != 0 {
		t.Errorf("mount point lists %q after Unmount, want nothing", names)
	}
	if err := m.Unmount(); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
}

func TestMountPointErrors(t *testing.T) {
	r := &mntRepo{tree: &imager.Tree{}, blobs: testutil.Blobs[imager.BlobID]{}}
	cfg := Config{Tree: r.tree, Blobs: r.blobs}
	base := t.TempDir()
	file := filepath.Join(base, "file")
	full := filepath.Join(base, "full")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(full, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		want error
	}{
		{filepath.Join(base, "missing"), ErrMountPointMissing},
		{file, ErrMountPointNotDir},
		{full, ErrMountPointNotEmpty},
		{"/proc", ErrMountPointMounted},
	} {
		_, err := Mount(tc.dir, cfg)
		if !errors.Is(err, tc.want) {
			t.Errorf("Mount(%s): %v, want %v", tc.dir, err, tc.want)
		} else if !strings.Contains(err.Error(), tc.dir) {
			t.Errorf("Mount(%s): error %q does not name the directory", tc.dir, err)
		}
	}
	for name, bad := range map[string]Config{
		"no tree":            {Blobs: r.blobs},
		"no blobs":           {Tree: r.tree},
		"image named tree":   {Tree: r.tree, Blobs: r.blobs, Images: map[string]imager.Image{"tree": mntBytesImage(nil)}},
		"image with slash":   {Tree: r.tree, Blobs: r.blobs, Images: map[string]imager.Image{"a/b": mntBytesImage(nil)}},
		"image named COMMIT": {Tree: r.tree, Blobs: r.blobs, Images: map[string]imager.Image{"COMMIT": mntBytesImage(nil)}},
	} {
		if _, err := Mount(base, bad); !errors.Is(err, ErrMountConfig) {
			t.Errorf("%s: %v, want ErrMountConfig", name, err)
		}
	}
}

func TestMountPointAlreadyMounted(t *testing.T) {
	r := newMntRepo(t)
	dir, _ := mountForTest(t, mntConfig(t, r, nil))
	_, err := Mount(dir, mntConfig(t, r, nil))
	if !errors.Is(err, ErrMountPointMounted) {
		t.Errorf("second Mount on %s: %v, want ErrMountPointMounted", dir, err)
	}
}

// mntFailingBlobs fails reads of one blob.
type mntFailingBlobs struct {
	testutil.Blobs[imager.BlobID]
	bad imager.BlobID
}

var errMntBlobBroken = errors.New("test: blob is broken")

func (f mntFailingBlobs) ReadBlob(id imager.BlobID, p []byte, off int64) (int, error) {
	if id == f.bad {
		return 0, errMntBlobBroken
	}
	return f.Blobs.ReadBlob(id, p, off)
}

// mntFailingImage fails reads beyond half its size.
type mntFailingImage struct{ mntBytesImage }

var errMntImageBroken = errors.New("test: image is broken")

func (f mntFailingImage) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.Size()/2 {
		return 0, errMntImageBroken
	}
	return f.mntBytesImage.ReadAt(p, off)
}

func TestMountReadErrors(t *testing.T) {
	r := newMntRepo(t)
	var logs testutil.LogBuffer
	cfg := mntConfig(t, r, slog.New(slog.NewTextHandler(&logs, nil)))
	var readme imager.Entry
	for _, e := range r.tree.Entries {
		if e.Path == "README.md" {
			readme = e
		}
	}
	cfg.Blobs = mntFailingBlobs{Blobs: r.blobs, bad: readme.Blob}
	cfg.Images["image.bad"] = mntFailingImage{mntBytesImage(make([]byte, 1<<20))}
	// A tree that lists a size larger than the blob: a short read is EIO too.
	short := *r.tree
	short.Entries = slices.Clone(r.tree.Entries)
	for i := range short.Entries {
		if short.Entries[i].Path == "a.txt" {
			short.Entries[i].Size += 10
		}
	}
	cfg.Tree = &short
	dir, _ := mountForTest(t, cfg)

	for _, p := range []string{"tree/README.md", "image.bad", "tree/a.txt"} {
		if _, err := os.ReadFile(filepath.Join(dir, p)); !errors.Is(err, syscall.EIO) {
			t.Errorf("reading %s: %v, want EIO", p, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "tree/a/x.txt")); err != nil || string(got) != "x\n" {
		t.Errorf("a good file next to broken ones: %q, %v", got, err)
	}
	out := logs.String()
	for _, want := range []string{errMntBlobBroken.Error(), errMntImageBroken.Error(), imager.ErrShortBlob.Error(), "README.md", "image.bad", "a.txt"} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not mention %q:\n%s", want, out)
		}
	}
}

func TestMountIndexWarnings(t *testing.T) {
	entries := []imager.Entry{
		{Path: "d", Kind: imager.KindDir},
		{Path: "d/f", Kind: imager.KindFile},
		{Path: "d/f", Kind: imager.KindFile},                    // duplicate
		{Path: "d/..", Kind: imager.KindFile},                   // bad name
		{Path: "e/f", Kind: imager.KindFile},                    // no parent
		{Path: "d/f/g", Kind: imager.KindFile},                  // parent is a file
		{Path: "s", Kind: imager.KindSubmodule},                 // shown as a dir...
		{Path: "s/x", Kind: imager.KindFile},                    // ...with no children
		{Path: strings.Repeat("n", 256), Kind: imager.KindFile}, // too long
		{Path: "z", Kind: imager.KindFile},
	}
	idx := newMountIndex(entries, 100)
	var warned []string
	for _, w := range idx.warnings {
		warned = append(warned, w.Path)
	}
	slices.Sort(warned)
	want := []string{"d/..", "d/f", "d/f/g", "e/f", strings.Repeat("n", 256), "s/x"}
	if !slices.Equal(warned, want) {
		t.Errorf("warnings for %q, want %q", warned, want)
	}
	for _, tc := range []struct {
		dir  int
		name string
		want int32
		ok   bool
	}{
		{-1, "d", 0, true}, {-1, "z", 9, true}, {-1, "s", 6, true}, {0, "f", 1, true},
		{-1, "f", 0, false}, {6, "x", 0, false}, {-1, "", 0, false},
	} {
		got, ok := idx.lookup(tc.dir, tc.name)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("lookup(%d, %q) = %d, %v; want %d, %v", tc.dir, tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if got := idx.dirs[0].subdirs; got != 2 {
		t.Errorf("root has %d subdirectories, want 2 (d and s)", got)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`:    "/a b",
		`/tab\011x`:  "/tab\tx",
		`/back\134s`: `/back\s`,
		`/plain`:     "/plain",
		`/odd\04`:    `/odd\04`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

// mntRSS is the process's resident set size in bytes.
func mntRSS(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// mntPatternLen is the period of mntPattern: a prime, so the pattern does
// not line up with pages or read sizes.
const mntPatternLen = 65521

// mntPattern is a deterministic Generator repeating random bytes with
// period mntPatternLen; it copies rather than computing per byte so that
// the race detector does not make it slow.
type mntPattern struct{ table []byte }

func newMntPattern() mntPattern {
	rng := rand.New(rand.NewPCG(5, 6))
	t := make([]byte, mntPatternLen)
	for i := range t {
		t[i] = byte(rng.Uint32())
	}
	return mntPattern{t}
}

func (g mntPattern) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], g.table[(off+int64(n))%mntPatternLen:])
	}
	return n, nil
}

// mntLargeImageSize is the synthetic image read through the mount to check
// that reads are streamed: far more than the bound on memory growth. Under
// the race detector it is a quarter of that, still twice the bound.
const (
	mntLargeImageSize = 512 << 20
	mntRSSBound       = 64 << 20
)

func mntLargeSize() int64 {
	if mntRace {
		return mntLargeImageSize / 4
	}
	return mntLargeImageSize
}

// TestMountLargeImageMemory reads a 512 MiB image through the mount and
// checks that the process's resident memory does not grow with it.
func TestMountLargeImageMemory(t *testing.T) {
	var b imager.Builder
	b.Data("header", bytes.Repeat([]byte{0xAB}, 4096))
	size := mntLargeSize()
	b.Gen("pattern", newMntPattern(), size-2*4096-1<<20)
	b.Zeros("zeros", 1<<20)
	b.Data("footer", bytes.Repeat([]byte{0xCD}, 4096))
	img := b.Layout(testutil.Blobs[imager.BlobID]{})
	if img.Size() != size {
		t.Fatalf("layout size %d, want %d", img.Size(), size)
	}
	dir, _ := mountForTest(t, Config{Tree: &imager.Tree{}, Blobs: testutil.Blobs[imager.BlobID]{}, Images: map[string]imager.Image{"big.img": img}})
	f, err := os.Open(filepath.Join(dir, "big.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Drop whatever the kernel may cache so every byte goes through the server.
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	before := mntRSS(t)
	got := make([]byte, 1<<20)
	want := make([]byte, len(got))
	var off int64
	for {
		n, err := io.ReadFull(f, got)
		if n > 0 {
			if _, err := img.ReadAt(want[:n], off); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:n], want[:n]) {
				t.Fatalf("bytes at %d+%d differ from the Image's", off, n)
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	after := mntRSS(t)
	if off != size {
		t.Errorf("read %d bytes, want %d", off, size)
	}
	t.Logf("RSS before %d MiB, after reading %d MiB: %d MiB", before>>20, off>>20, after>>20)
	if after-before > mntRSSBound {
		t.Errorf("RSS grew by %d MiB reading %d MiB: reads are not streamed", (after-before)>>20, off>>20)
	}
}

// mountinfoOf returns the filesystem type, source and mount options of the
// mount on dir, from /proc/self/mountinfo.
func mountinfoOf(t *testing.T, dir string) (fstype, source, opts string) {
	t.Helper()
	data, err := os.ReadFile(procMountinfo)
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 6 || sep+2 >= len(f) || unescapeMountinfo(f[4]) != real {
			continue
		}
		return f[sep+1], unescapeMountinfo(f[sep+2]), f[5]
	}
	t.Fatalf("%s is not in %s", real, procMountinfo)
	return "", "", ""
}

// mntDeadMountEnv names the directory a helper process mounts and then
// abandons by exiting, leaving a dead FUSE mount behind.
const mntDeadMountEnv = "GITFS_TEST_DEAD_MOUNT"

// TestMountHelperDeadMount is not a test: run by TestMountPointDead in a
// child process, it mounts and exits without unmounting.
func TestMountHelperDeadMount(t *testing.T) {
	dir := os.Getenv(mntDeadMountEnv)
	if dir == "" {
		return // only meaningful as TestMountPointDead's child process
	}
	if _, err := Mount(dir, Config{Tree: &imager.Tree{}, Blobs: testutil.Blobs[imager.BlobID]{}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestMountPointDead checks that a mount point left behind by a server
// that died is refused with advice, not mistaken for a missing directory.
func TestMountPointDead(t *testing.T) {
	mntRequireFUSE(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMountHelperDeadMount$")
	cmd.Env = append(os.Environ(), mntDeadMountEnv+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("fusermount3", "-u", dir).CombinedOutput(); err != nil {
			t.Errorf("fusermount3 -u on the dead mount: %v\n%s", err, out)
		}
		if mntIsMounted(t, dir) {
			t.Errorf("%s still mounted", dir)
		}
	})
	if !mntIsMounted(t, dir) {
		t.Fatalf("%s not mounted after the helper process exited", dir)
	}
	if _, err := os.ReadDir(dir); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("listing a dead mount: %v, want ENOTCONN (is the mount dead?)", err)
	}
	_, err := Mount(dir, Config{Tree: &imager.Tree{}, Blobs: testutil.Blobs[imager.BlobID]{}})
	if !errors.Is(err, ErrMountPointMounted) || !strings.Contains(err.Error(), "fusermount3 -u") {
		t.Errorf("Mount on a dead mount: %v, want ErrMountPointMounted advising fusermount3 -u", err)
	}
}

// TestMountUnmountBusy checks that Unmount fails while a file is open,
// leaves the mount working, and succeeds once the file is closed.
func TestMountUnmountBusy(t *testing.T) {
	r := newMntRepo(t)
	dir, m := mountForTest(t, mntConfig(t, r, nil))
	f, err := os.Open(filepath.Join(dir, "tree", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Unmount with a file open: %v, want an error naming %s", err, dir)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(got) != "# test\n" {
		t.Errorf("reading after a failed Unmount: %q, %v", got, err)
	}
	if err := m.Unmount(); err != nil {
		t.Errorf("Unmount after closing: %v", err)
	}
}
