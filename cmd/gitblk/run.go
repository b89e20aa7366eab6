package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/gcfloor"
)

const usage = `gitblk serves a git commit's tree to virtual machines as a tar or FAT disk,
synthesized on the fly from git objects.

Usage:
  gitblk serve [flags] REPO REF          serve images of REF over NBD
  gitblk mount [flags] REPO REF DIR      show the images and the tree through FUSE
  gitblk build [flags] REPO REF          write an image to a file or stdout
  gitblk ls    [flags] REPO REF          print an image's extent table and warnings
  gitblk status [flags] ADDR             what a running serve serves (its --metrics-listen)

Examples:
  gitblk serve --listen unix:/run/gitblk/site.sock /srv/site.git main
  nbdinfo nbd+unix:///fat?socket=/run/gitblk/site.sock
  gitblk build --format fat -o site.img . HEAD
  gitblk mount . HEAD /mnt/site

Run 'gitblk COMMAND --help' for a command's flags.
`

// errUsage marks errors that come from a wrong command line (exit code 2).
var errUsage = errors.New("usage")

// usageError is a command-line error; its text is printed with a hint.
type usageError struct{ msg string }

func (e *usageError) Error() string   { return e.msg }
func (e *usageError) Is(t error) bool { return t == errUsage }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// Run runs the gitblk command line args; main is a thin shell over it.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "mount":
		return runMount(ctx, rest, stdout, stderr)
	case "build":
		return runBuild(ctx, rest, stdout, stderr)
	case "ls":
		return runLs(ctx, rest, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usagef("unknown command %q", cmd)
}

// exitCode prints err (if any) and returns the process exit code.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "gitblk: %v\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "gitblk: %v\n", err)
	return 1
}

// newFlags makes a flag set for a subcommand whose help shows synopsis,
// the flags and examples.
func newFlags(name, synopsis, examples string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: gitblk %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		if examples != "" {
			fmt.Fprintf(out, "\nExamples:\n%s", examples)
		}
	}
	return fs
}

// parseArgs parses flags that may come before, between or after the
// positional arguments, and checks the number of positionals.
func parseArgs(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	pos, err := parsePositionals(fs, args)
	if err != nil {
		return nil, err
	}
	return pos, wantArgs(fs, pos, want)
}

// wantArgs checks the number of positional arguments.
func wantArgs(fs *flag.FlagSet, pos []string, want int) error {
	if len(pos) != want {
		fs.Usage()
		return usagef("%s: want %d arguments, got %d", fs.Name(), want, len(pos))
	}
	return nil
}

// parsePositionals parses flags that may come before, between or after
// the positional arguments, and returns the positionals.
func parsePositionals(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		// Parse stops at the first positional, or eats a "--" and stops
		// after it: then everything left is positional.
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, nil
}

// imageFlags are the flags that select an image, shared by every command.
type imageFlags struct {
	format     string
	symlinks   string
	fatType    int
	sectorSize int
}

func (f *imageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.format, "format", "tar", "image format: tar or fat")
	fs.StringVar(&f.symlinks, "symlinks", "", "symlinks: keep (tar only, as git archive), follow (copy the in-tree target), skip; default keep for tar, follow for fat")
	fs.IntVar(&f.fatType, "fat-type", 0, "FAT type: 16 or 32; default FAT16 when the tree fits, else FAT32")
	fs.IntVar(&f.sectorSize, "sector-size", 512, "FAT bytes per sector: 512 or 4096 (4096 suits Mirage on Xen)")
}

// options turns the flags into imager options for format f ("" = --format).
func (f *imageFlags) options(format string) (imager.Options, error) {
	if format == "" {
		format = f.format
	}
	var o imager.Options
	var err error
	if o.Format, err = imager.ParseFormat(format); err != nil {
		return o, usagef("--format: %v", err)
	}
	if f.symlinks != "" {
		if o.Symlinks, err = imager.ParseSymlinkMode(f.symlinks); err != nil {
			return o, usagef("--symlinks: %v", err)
		}
		if o.Format == imager.FormatFAT && o.Symlinks == imager.SymlinksKeep {
			o.Symlinks = imager.SymlinksDefault // FAT cannot keep links: follow
		}
	}
	switch f.fatType {
	case 0, 16, 32:
		o.FATType = f.fatType
	default:
		return o, usagef("--fat-type: want 16 or 32, got %d", f.fatType)
	}
	switch f.sectorSize {
	case 512, 4096:
		o.SectorSize = f.sectorSize
	default:
		return o, usagef("--sector-size: want 512 or 4096, got %d", f.sectorSize)
	}
	if o.Format == imager.FormatTar {
		o.FATType, o.SectorSize = 0, 0 // irrelevant: keep cache keys canonical
	}
	return o, nil
}

// commonFlags are the flags every command shares: which image, and how
// the repository is read.
type commonFlags struct {
	imageFlags
	repoFlags
}

func (f *commonFlags) register(fs *flag.FlagSet) {
	f.imageFlags.register(fs)
	f.repoFlags.register(fs)
}

// opened is a repository with a revision resolved in it.
type opened struct {
	repo     *gitfs.Repo
	commit   *gitfs.Commit
	cacheDir string
}

// openRev opens the repository and resolves rev; the caller closes repo.
func (f *commonFlags) openRev(repoPath, rev string) (*opened, error) {
	repo, cacheDir, err := f.open(repoPath)
	if err != nil {
		return nil, err
	}
	c, err := repo.Resolve(rev)
	if err != nil {
		repo.Close()
		return nil, err
	}
	return &opened{repo: repo, commit: c, cacheDir: cacheDir}, nil
}

// openedImage is a repository with a revision resolved and its image laid
// out.
type openedImage struct {
	*opened
	layout   *imager.Layout
	opts     imager.Options
	warnings []imager.Warning
}

// openImage opens the repository, resolves rev and lays out its image in
// the --format format; the caller closes repo.
func (f *commonFlags) openImage(repoPath, rev string) (*openedImage, error) {
	opts, err := f.options("")
	if err != nil {
		return nil, err
	}
	o, err := f.openRev(repoPath, rev)
	if err != nil {
		return nil, err
	}
	l, ws, err := gitfs.NewImages(o.repo, 1, o.cacheDir).Image(o.commit, opts)
	if err != nil {
		o.repo.Close()
		return nil, err
	}
	return &openedImage{opened: o, layout: l, opts: opts, warnings: ws}, nil
}

// repoFlags are the flags that open a repository, and the command's
// logger for the repository's warnings (nil: none).
type repoFlags struct {
	cacheSize string
	cacheDir  string
	log       *slog.Logger
}

func (f *repoFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cacheSize, "cache-size", "", fmt.Sprintf("memory for inflated git data, e.g. 64M, 1G (default %dM)", gitfs.DefaultCacheSize>>20))
	fs.StringVar(&f.cacheDir, "cache-dir", "", "directory for on-disk caches: tree listings, and big blobs inflated for random reads (removed at exit) (default $XDG_CACHE_HOME/gitblk or ~/.cache/gitblk)")
}

// cacheBytes is --cache-size in bytes, 0 when not given.
func (f *repoFlags) cacheBytes() (int64, error) {
	if f.cacheSize == "" {
		return 0, nil
	}
	n, err := config.ParseBytes(f.cacheSize)
	if err != nil {
		return 0, usagef("--cache-size: %v", err)
	}
	return n, nil
}

// open opens the repository and returns it with the cache directory in
// use: --cache-dir, else the default one when it can be created, else none.
func (f *repoFlags) open(path string) (*gitfs.Repo, string, error) {
	var opts gitfs.Options
	var err error
	if opts.CacheSize, err = f.cacheBytes(); err != nil {
		return nil, "", err
	}
	opts.CacheDir, opts.Logger = f.cacheDir, f.log
	if opts.CacheDir == "" {
		if d := gitfs.DefaultCacheDir(); d != "" && os.MkdirAll(d, 0o700) == nil {
			opts.CacheDir = d
		}
	}
	r, err := gitfs.Open(path, opts)
	if err != nil {
		return nil, "", err
	}
	return r, opts.CacheDir, nil
}

// memoryAllowance is the Go heap a server needs beyond its blob cache:
// layouts, connection buffers, go-git's pack indexes. The soft memory
// limit is their sum, so the collector keeps RSS near what is live instead
// of letting the heap grow to twice that (figures in bench/README.md).
const memoryAllowance = 80 << 20

// setup readies the process for a command that reads a repository, and
// returns f: it sets the soft memory limit to the blob cache (--cache-size)
// plus memoryAllowance, unless GOMEMLIMIT sets it or --cache-size does not
// parse (opening the repository reports that), and makes log the logger
// of the repository's warnings.
func (f *repoFlags) setup(log *slog.Logger) *repoFlags {
	f.log = log
	if cacheSize, err := f.cacheBytes(); err == nil {
		setMemoryLimit(cacheSize)
	}
	return f
}

// setMemoryLimit sets the soft memory limit to cacheSize (the blob caches'
// total; 0 for the default) plus memoryAllowance, unless GOMEMLIMIT sets it.
func setMemoryLimit(cacheSize int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if cacheSize <= 0 {
		cacheSize = gitfs.DefaultCacheSize
	}
	debug.SetMemoryLimit(cacheSize + memoryAllowance)
	gcfloor.Set(heapFloor, os.Getenv("GOGC") != "")
}

// heapFloor is the smallest heap goal of a command that reads blobs: a
// server's first reads of a small site then run without collecting (see
// internal/gcfloor), and a bigger heap is paced as before.
const heapFloor = 32 << 20

// layoutHeapFloor is the smallest heap goal while a server lays out its
// images at start. Most of that heap stays live (the listings and the
// layouts) and what does not is sizing scratch, so collecting from 32 MiB
// on scanned the same listing several times: the FAT export of 300,000
// files was ready about 30 ms later, with the same peak RSS, since the
// soft memory limit bounds the heap either way.
const layoutHeapFloor = 64 << 20

// printWarnings writes image warnings, one per line, naming the path.
func printWarnings(w io.Writer, format imager.Format, ws []imager.Warning) {
	for _, x := range ws {
		fmt.Fprintf(w, "gitblk: warning: %s: %s: %s\n", format, x.Path, x.Msg)
	}
}

// logWarnings logs image warnings, one record each.
func logWarnings(log *slog.Logger, c *gitfs.Commit, format imager.Format, ws []imager.Warning) {
	for _, x := range ws {
		log.Warn("image warning", "commit", c.ID, "format", string(format), "path", x.Path, "warning", x.Msg)
	}
}
