// Package fusefs mounts a commit read-only through FUSE: its images as
// files at the root, its tree under tree/, and COMMIT naming it. It needs
// only imager's types (a tree listing, a blob reader, images), so it
// serves any source of those.
package fusefs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/gitblk/gitblk/imager"
)

// Names at the root of a mount, besides the images.
const (
	mountTreeName   = "tree"
	mountCommitName = "COMMIT"
)

// Mount layout choices.
const (
	// mountCacheTimeout is how long the kernel may cache entries, negative
	// lookups and attributes. Nothing under a mount ever changes, so any
	// long value is right; it only bounds how long a stale view could live
	// if that promise were ever broken.
	mountCacheTimeout = time.Hour
	// mountBlockSize is the st_blksize reported: the page size, what the
	// kernel reads ahead in.
	mountBlockSize = 4096
	// mntStatBlock is the unit of st_blocks, fixed by stat(2).
	mntStatBlock = 512
	// mntNameMax is the longest file name the kernel passes (NAME_MAX).
	mntNameMax = 255
	// devFUSE is the FUSE device every mount needs.
	devFUSE = "/dev/fuse"
	// procMountinfo lists this process's mounts.
	procMountinfo = "/proc/self/mountinfo"
	// mountinfoPointField is the index of the mount point in a mountinfo line.
	mountinfoPointField = 4
	// mountinfoMaxLine bounds a mountinfo line (two paths of up to PATH_MAX,
	// escaped, and options).
	mountinfoMaxLine = 1 << 20
)

// Fixed inode numbers; entries of the tree follow the images.
const (
	inoRoot   = 1 // FUSE_ROOT_ID
	inoTree   = 2
	inoCommit = 3
	inoImages = 4
)

// Sentinel errors of Mount.
var (
	ErrMountPointMissing  = errors.New("fusefs: mount point does not exist")
	ErrMountPointNotDir   = errors.New("fusefs: mount point is not a directory")
	ErrMountPointNotEmpty = errors.New("fusefs: mount point is not empty")
	ErrMountPointMounted  = errors.New("fusefs: mount point is already a mount point")
	ErrNoFUSE             = errors.New("fusefs: FUSE is not available")
	ErrMountNotPermitted  = errors.New("fusefs: FUSE mounting is not permitted")
	ErrMountFailed        = errors.New("fusefs: FUSE mount failed")
	ErrMountConfig        = errors.New("fusefs: bad mount configuration")
)

// Config describes what a mount shows; all of it is fixed for the life
// of the mount.
type Config struct {
	CommitID, Ref string                  // written to COMMIT, one per line
	Time          time.Time               // commit time: the mtime of everything (zero: Tree.Time)
	Tree          *imager.Tree            // the commit's full tree, shown under tree/
	Blobs         imager.BlobReader       // reads file contents (concurrency-safe)
	Images        map[string]imager.Image // read-only regular files at the root, by name
	Logger        *slog.Logger            // nil: no logging
	AllowOther    bool                    // let other users see the mount (FUSE allow_other)
}

// Mounted is a mounted, read-only FUSE view of a commit. (Not named Mount:
// that is the function that makes one.)
type Mounted struct {
	dir    string
	server *fuse.Server
	log    *slog.Logger
	done   chan struct{} // closed when the kernel connection is gone

	mu sync.Mutex // serializes Unmount
}

// Mount mounts cfg read-only on dir, which must be an existing, empty
// directory that is not a mount point already, and serves it until it is
// unmounted (Unmount, or `fusermount3 -u dir`).
func Mount(dir string, cfg Config) (*Mounted, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Tree == nil {
		return nil, fmt.Errorf("%w: no tree", ErrMountConfig)
	}
	if cfg.Blobs == nil {
		return nil, fmt.Errorf("%w: no blob reader", ErrMountConfig)
	}
	names := make([]string, 0, len(cfg.Images))
	for name, img := range cfg.Images {
		if !mntValidName(name) || name == mountTreeName || name == mountCommitName {
			return nil, fmt.Errorf("%w: image name %q", ErrMountConfig, name)
		}
		if img == nil || img.Size() < 0 {
			return nil, fmt.Errorf("%w: image %q has no size", ErrMountConfig, name)
		}
		names = append(names, name)
	}
	sort.Strings(names)

	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fusefs: mount point %s: %w", dir, err)
	}
	if err := checkMountPoint(abs); err != nil {
		return nil, err
	}
	if _, err := os.Stat(devFUSE); err != nil {
		return nil, fmt.Errorf("%w: %s: %w (load the fuse kernel module, or run the container with --device %s; "+
			"install the fuse3 package for fusermount3)", ErrNoFUSE, devFUSE, err, devFUSE)
	}
	if os.Geteuid() != 0 {
		// fusermount3 opens the device as the calling user.
		if err := syscall.Access(devFUSE, accessReadWrite); err != nil {
			return nil, fmt.Errorf("%w: %s is not readable and writable by uid %d: %w "+
				"(run as root, or give the user access to %s)", ErrMountNotPermitted, devFUSE, os.Geteuid(), err, devFUSE)
		}
		if _, err := exec.LookPath("fusermount3"); err != nil {
			return nil, fmt.Errorf("%w: fusermount3 not found: install the fuse3 package", ErrMountNotPermitted)
		}
	}

	idx := newMountIndex(cfg.Tree.Entries, inoImages+uint64(len(names)))
	for _, w := range idx.warnings {
		log.Warn("fusefs: entry not shown under tree/", "path", w.Path, "reason", w.Msg)
	}
	mtime := cfg.Time
	if mtime.IsZero() {
		mtime = cfg.Tree.Time
	}
	root := &mntRoot{
		mntNode: mntNode{fs: &mntFS{idx: idx, blobs: cfg.Blobs, log: log, time: mtime}},
		commit:  []byte(cfg.CommitID + "\n" + cfg.Ref + "\n"),
		images:  names,
		byName:  cfg.Images,
	}

	timeout := mountCacheTimeout
	goLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	opts := &fs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		UID:             uint32(os.Getuid()),
		GID:             uint32(os.Getgid()),
		Logger:          goLog,
		MountOptions: fuse.MountOptions{
			Options:                  []string{"ro", "default_permissions"},
			AllowOther:               cfg.AllowOther,
			FsName:                   mountSource(cfg.CommitID),
			Name:                     "gitblk",
			Logger:                   goLog,
			EnableSymlinkCaching:     true,
			ExplicitDataCacheControl: true,
			// As root, mount(2) directly; otherwise (or if that is
			// refused) through the setuid fusermount3.
			DirectMount:      true,
			DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
		},
	}
	if mountTestWritable {
		opts.MountOptions.Options = []string{"default_permissions"}
		opts.MountOptions.DirectMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV
	}
	server, err := fs.Mount(abs, root, opts)
	if err != nil {
		return nil, mountError(abs, err)
	}
	m := &Mounted{dir: abs, server: server, log: log, done: make(chan struct{})}
	go func() {
		server.Wait()
		close(m.done)
		log.Info("fusefs: unmounted", "dir", abs)
	}()
	log.Info("fusefs: mounted", "dir", abs, "commit", cfg.CommitID, "ref", cfg.Ref,
		"entries", len(cfg.Tree.Entries), "images", strings.Join(names, ","))
	return m, nil
}

// mountSource is the mount's source as mount(8) lists it: gitblk and the
// commit id, if it is one (fusermount's option syntax takes no commas).
func mountSource(commit string) string {
	if commit == "" || strings.Trim(commit, "0123456789abcdef") != "" {
		return "gitblk"
	}
	return "gitblk:" + commit
}

// mountTestWritable, set only by tests, mounts without "ro" so that the
// nodes' own EROFS answers are exercised, not just the kernel's.
var mountTestWritable bool

// accessReadWrite is access(2)'s R_OK|W_OK.
const accessReadWrite = 0x4 | 0x2

// mountError explains a failed mount and what would make it work.
func mountError(dir string, err error) error {
	return fmt.Errorf("%w at %s: %w (mounting FUSE needs root with CAP_SYS_ADMIN, "+
		"or the setuid fusermount3 from the fuse3 package)", ErrMountFailed, dir, trimmedError{err})
}

// trimmedError drops the newline go-fuse ends some messages with.
type trimmedError struct{ err error }

func (e trimmedError) Error() string { return strings.TrimSpace(e.err.Error()) }
func (e trimmedError) Unwrap() error { return e.err }

// Dir is the absolute mount point.
func (m *Mounted) Dir() string { return m.dir }

// Wait returns when the mount is gone, by Unmount or by `fusermount3 -u`.
func (m *Mounted) Wait() { <-m.done }

// Unmount unmounts and returns when the mount is gone. It fails (EBUSY)
// while files under the mount are open. Unmounting a mount that is
// already gone is not an error.
func (m *Mounted) Unmount() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.done:
		return nil
	default:
	}
	if err := m.server.Unmount(); err != nil {
		select {
		case <-m.done: // unmounted by someone else meanwhile
			return nil
		default:
		}
		return fmt.Errorf("fusefs: unmounting %s: %w", m.dir, err)
	}
	<-m.done
	return nil
}

// checkMountPoint returns a clear error for a mount point that is missing,
// not a directory, already mounted (or a dead FUSE mount) or not empty.
func checkMountPoint(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("%w: %s is a dead FUSE mount (run fusermount3 -u %s)", ErrMountPointMounted, dir, dir)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s", ErrMountPointMissing, dir)
	case err != nil:
		return fmt.Errorf("fusefs: mount point: %w", err)
	case !st.IsDir():
		return fmt.Errorf("%w: %s", ErrMountPointNotDir, dir)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("fusefs: mount point: %w", err)
	}
	mounted, err := isMountPoint(real)
	if err != nil {
		return err
	}
	if mounted {
		return fmt.Errorf("%w: %s (if it is a gitblk mount whose process died, run fusermount3 -u %s)",
			ErrMountPointMounted, dir, dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fusefs: mount point: %w", err)
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != io.EOF {
		if err != nil {
			return fmt.Errorf("fusefs: mount point: %w", err)
		}
		return fmt.Errorf("%w: %s", ErrMountPointNotEmpty, dir)
	}
	return nil
}

// isMountPoint reports whether dir (absolute, symlinks resolved) is listed
// as a mount point in /proc/self/mountinfo.
func isMountPoint(dir string) (bool, error) {
	f, err := os.Open(procMountinfo)
	if err != nil {
		return false, fmt.Errorf("fusefs: checking mount point: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, mountinfoMaxLine)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > mountinfoPointField && unescapeMountinfo(fields[mountinfoPointField]) == dir {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("fusefs: reading %s: %w", procMountinfo, err)
	}
	return false, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space, \011, \012,
// \134) the kernel writes in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && mntIsOctal(s[i+1]) && mntIsOctal(s[i+2]) && mntIsOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func mntIsOctal(c byte) bool { return c >= '0' && c <= '7' }
