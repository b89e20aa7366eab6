package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/internal/testutil"
)

func TestExportNames(t *testing.T) {
	x := exportNamer{defaultRev: "main", patterns: []string{"refs/tags/*", "refs/heads/release-*"}}
	good := map[string]exportName{
		"":                         {rev: "main"},
		"tar":                      {rev: "main", format: "tar"},
		"fat":                      {rev: "main", format: "fat"},
		"refs/tags/v1":             {rev: "refs/tags/v1"},
		"refs/tags/v1:fat":         {rev: "refs/tags/v1", format: "fat"},
		"refs/heads/release-2:tar": {rev: "refs/heads/release-2", format: "tar"},
	}
	for name, want := range good {
		got, err := x.parse(name)
		if err != nil || got != want {
			t.Errorf("parse(%q) = %+v, %v; want %+v", name, got, err, want)
		}
	}
	for _, name := range []string{"main", "refs/heads/main", "refs/tags/v1:iso", "refs/tags/a/b", "v1", "tags/v1", ":fat", "refs/tags/v1:",
		"refs/tags/v1~1", "refs/tags/v1^2", "refs/tags/v1^{tree}", "refs/tags/v1@{1}", "refs/tags/v1~1:tar", "refs/tags/..",
		"refs/tags/.hidden", "refs/tags/x.lock", "refs/tags/a b", "refs/tags/v1\x00", "refs/tags/*", "refs/tags/[v]1"} {
		if got, err := x.parse(name); !errors.Is(err, errUnknownName) {
			t.Errorf("parse(%q) = %+v, %v; want errUnknownName", name, got, err)
		}
	}
	list := x.list([]string{"refs/heads/main", "refs/tags/v1", "refs/heads/release-2"})
	if want := []string{"", "tar", "fat", "refs/tags/v1", "refs/heads/release-2"}; strings.Join(list, ",") != strings.Join(want, ",") {
		t.Errorf("list = %q, want %q", list, want)
	}
	if err := checkPatterns([]string{"tags/*"}); !errors.Is(err, errUsage) {
		t.Errorf("checkPatterns(tags/*) = %v, want a usage error", err)
	}
	if err := checkPatterns([]string{"refs/tags/["}); !errors.Is(err, errUsage) {
		t.Errorf("checkPatterns(refs/tags/[) = %v, want a usage error", err)
	}
}

func TestParseArgsInterleaved(t *testing.T) {
	var out bytes.Buffer
	fs := newFlags("build", "build [flags] REPO REF", "", &out)
	o := fs.String("o", "-", "")
	var img imageFlags
	img.register(fs)
	pos, err := parseArgs(fs, []string{"repo", "-o", "x.img", "main", "--format", "fat"}, 2)
	if err != nil || strings.Join(pos, " ") != "repo main" || *o != "x.img" || img.format != "fat" {
		t.Fatalf("parseArgs = %q, %v (o=%q format=%q)", pos, err, *o, img.format)
	}
	if pos, err := parseArgs(fs, []string{"-o", "y.img", "--", "-repo", "--format"}, 2); err != nil || strings.Join(pos, " ") != "-repo --format" || *o != "y.img" {
		t.Errorf("-- ends flags: %q, %v", pos, err)
	}
	if pos, err := parseArgs(fs, []string{"repo", "--", "main", "-q"}, 3); err != nil || strings.Join(pos, " ") != "repo main -q" {
		t.Errorf("-- after a positional: %q, %v", pos, err)
	}
	if _, err := parseArgs(fs, []string{"only-one"}, 2); !errors.Is(err, errUsage) {
		t.Errorf("one positional: %v, want a usage error", err)
	}
	if _, err := parseArgs(fs, []string{"--nope", "a", "b"}, 2); !errors.Is(err, errUsage) {
		t.Errorf("unknown flag: %v, want a usage error", err)
	}
	if _, err := parseArgs(fs, []string{"--help"}, 2); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v, want flag.ErrHelp", err)
	}
}

func TestImageOptions(t *testing.T) {
	bad := []imageFlags{
		{format: "iso", sectorSize: 512},
		{format: "fat", fatType: 12, sectorSize: 512},
		{format: "fat", sectorSize: 1024},
		{format: "tar", symlinks: "maybe", sectorSize: 512},
	}
	for _, f := range bad {
		if _, err := f.options(""); !errors.Is(err, errUsage) {
			t.Errorf("options(%+v) = %v, want a usage error", f, err)
		}
	}
	f := imageFlags{format: "tar", fatType: 32, sectorSize: 4096, symlinks: "keep"}
	tarOpts, err := f.options("")
	if err != nil || tarOpts.FATType != 0 || tarOpts.SectorSize != 0 {
		t.Errorf("tar options = %+v, %v; want FAT fields cleared", tarOpts, err)
	}
	fatOpts, err := f.options("fat")
	if err != nil || fatOpts.FATType != 32 || fatOpts.SectorSize != 4096 || fatOpts.Symlinks != "" {
		t.Errorf("fat options = %+v, %v", fatOpts, err)
	}
}

func TestRunUsage(t *testing.T) {
	var out, errb bytes.Buffer
	ctx := context.Background()
	if err := Run(ctx, nil, &out, &errb); !errors.Is(err, errUsage) {
		t.Errorf("no args: %v", err)
	}
	if err := Run(ctx, []string{"frobnicate"}, &out, &errb); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "frobnicate") {
		t.Errorf("unknown command: %v", err)
	}
	out.Reset()
	if err := Run(ctx, []string{"--help"}, &out, &errb); err != nil || !strings.Contains(out.String(), "Examples:") {
		t.Errorf("--help: %v\n%s", err, out.String())
	}
	for _, cmd := range []string{"serve", "mount", "build", "ls"} {
		errb.Reset()
		err := Run(ctx, []string{cmd, "--help"}, &out, &errb)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errb.String(), "Examples:") {
			t.Errorf("%s --help: %v\n%s", cmd, err, errb.String())
		}
		if exitCode(err, &errb) != 0 {
			t.Errorf("%s --help: nonzero exit code", cmd)
		}
		// Defaults are shown as values, not as the names of constants.
		if want := fmt.Sprintf("(default %dM)", gitfs.DefaultCacheSize>>20); !strings.Contains(errb.String(), want) || strings.Contains(errb.String(), "gitfs.") {
			t.Errorf("%s --help does not show the cache size default as %s:\n%s", cmd, want, errb.String())
		}
	}
}

// TestBuildToDevNull: /dev/null is a character device but not a terminal,
// so an image may be written to it; a terminal is still refused.
func TestBuildToDevNull(t *testing.T) {
	dir := testutil.NewRepo(t)
	testutil.WriteFile(t, dir, "a.txt", []byte("hello\n"), 0o644)
	testutil.CommitAll(t, dir, "one")
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	var errb bytes.Buffer
	if err := Run(context.Background(), []string{"build", "-q", "--cache-dir", t.TempDir(), dir, "HEAD"}, null, &errb); err != nil {
		t.Errorf("build to /dev/null: %v\n%s", err, errb.String())
	}
	if isTerminal(null) {
		t.Error("isTerminal(/dev/null) = true")
	}
}

func TestListenUnix(t *testing.T) {
	dir, err := os.MkdirTemp("", "gitblk-listen-") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s.sock")
	l, err := listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode: %v, %v; want 0660", st, err)
	}
	if _, err := listen("unix:" + sock); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Errorf("second listen on a live socket: %v", err)
	}
	// A stale socket (its server gone without removing it) is replaced.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := listen("unix:" + sock)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	l2.Close()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after close: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := listen("unix:" + file); err == nil {
		t.Error("listen over a regular file succeeded")
	}
	for _, bad := range []string{"unix:", "unix:@", "nonsense"} {
		if _, err := listen(bad); !errors.Is(err, errUsage) {
			t.Errorf("listen(%q) = %v, want a usage error", bad, err)
		}
	}
	ab, err := listen("unix:@gitblk-test-" + filepath.Base(dir))
	if err != nil {
		t.Fatalf("abstract socket: %v", err)
	}
	ab.Close()
}
