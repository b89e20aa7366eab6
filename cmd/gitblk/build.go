package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/gitblk/gitblk/imager"
)

const buildExamples = `  gitblk build -o site.tar /srv/site.git main
  gitblk build --config /etc/gitblk/gitblk.toml --export keys | tar -tvf -
  gitblk build --format fat --sector-size 4096 -o site.img . v1.2
  gitblk build . HEAD | sha256sum
`

// copyChunk is how much of an image is read and written at a time.
const copyChunk = 1 << 20

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	preloadInflater()
	fs := newFlags("build", "build [flags] REPO REF\n       gitblk build [-o FILE] --config FILE --export NAME", buildExamples, stderr)
	var cf commonFlags
	cf.register(fs)
	out := fs.String("o", "-", "output file, or - for standard output")
	quiet := fs.Bool("q", false, "no progress bar")
	var ef exportFlags
	ef.register(fs)
	pos, err := ef.parse(fs, args, 0, 2)
	if err != nil {
		return err
	}
	var layout *imager.Layout
	var opts imager.Options
	var warnings []imager.Warning
	private := false // the image holds decrypted files
	if ef.config != "" {
		x, err := ef.openExport()
		if err != nil {
			return err
		}
		defer x.close()
		layout, opts, warnings, private = x.layout, x.opts, x.warnings, x.decrypts
	} else {
		cf.setup(slog.New(slog.NewTextHandler(stderr, nil)))
		o, err := cf.openImage(pos[0], pos[1])
		if err != nil {
			return err
		}
		defer o.repo.Close()
		layout, opts, warnings = o.layout, o.opts, o.warnings
	}
	printWarnings(stderr, opts.Format, warnings)

	var prog *progress
	if !*quiet {
		prog = newProgress(stderr, layout.Size())
	}
	if *out == "-" {
		if f, ok := stdout.(*os.File); ok && isTerminal(f) {
			return usagef("build: refusing to write an image to a terminal; use -o FILE or a pipe")
		}
		return copyImage(ctx, stdout, layout, prog)
	}
	return writeFile(ctx, *out, layout, prog, private)
}

// writeFile writes img to path. A regular file (or a new one) is written to
// a temporary name beside it and renamed only when complete; a device or a
// pipe is written in place. A symlink is followed (its target is
// replaced); an existing file keeps its mode, a new one gets 0666 less the
// umask. A private image (decrypted secrets) is never readable by group or
// others, from its first byte: the file gets at most 0600.
func writeFile(ctx context.Context, path string, img imager.Image, prog *progress, private bool) error {
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	mode, existing := os.FileMode(0o666), false
	if st, err := os.Stat(path); err == nil {
		if !st.Mode().IsRegular() {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return fmt.Errorf("build: %w", err)
			}
			if err := copyImage(ctx, f, img, prog); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}
		mode, existing = st.Mode().Perm(), true
	}
	if private {
		mode &= 0o600
	}
	tmp, err := createTemp(path, mode)
	if err != nil {
		return fmt.Errorf("build: cannot write output: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := copyImage(ctx, tmp, img, prog); err != nil {
		return err
	}
	if existing || private { // a new file got perm less the umask when created
		if err := tmp.Chmod(mode); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	ok = true
	return nil
}

// createTemp creates a new file beside path, with perm less the umask.
func createTemp(path string, perm os.FileMode) (*os.File, error) {
	var f *os.File
	var err error
	for range 16 {
		name := fmt.Sprintf("%s/.%s.gitblk-%d", filepath.Dir(path), filepath.Base(path), rand.Uint64())
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	return f, err
}

// copyImage writes all of img to w in order.
func copyImage(ctx context.Context, w io.Writer, img imager.Image, prog *progress) error {
	buf := make([]byte, copyChunk)
	size := img.Size()
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("build: interrupted: %w", err)
		}
		n := int64(len(buf))
		if size-off < n {
			n = size - off
		}
		m, err := img.ReadAt(buf[:n], off)
		if int64(m) != n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("build: reading image at %d: %w", off, err)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return fmt.Errorf("build: writing output: %w", err)
		}
		off += n
		prog.set(off)
	}
	prog.done()
	return nil
}
