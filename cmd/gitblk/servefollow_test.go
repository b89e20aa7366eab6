package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/internal/testutil"
	"github.com/gitblk/gitblk/metrics"
	"github.com/gitblk/gitblk/nbd"
)

// The follow flags go together as documented.
func TestFollowFlags(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte("[export.a]\nrepository = \".\"\nref = \"main\"\n"), 0o644)
	for _, args := range [][]string{
		{"serve", "--follow", "file:///srv/site.git", "/srv/site.git", "main"}, // REPO with --follow
		{"serve", "--follow", "file:///srv/site.git"},                          // no REF
		{"serve", "--follow-every", "1m", "/srv/site.git", "main"},             // --follow-* alone
		{"serve", "--follow-dir", "/m", "/srv/site.git", "main"},
		{"serve", "--config", cfg, "--follow", "file:///srv/site.git"},      // the file says it
		{"serve", "--config", cfg, "--metrics-listen", "127.0.0.1:9410"},    // the file says it
		{"serve", "--follow", "https://u:secret@h/site.git", "main"},        // a password
		{"serve", "--follow", "file:///x", "--follow-every", "1ms", "main"}, // too often
		{"serve", "--metrics-listen", "nowhere", ".", "main"},
	} {
		var out bytes.Buffer
		err := Run(context.Background(), args, &out, &out)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error shows the password: %v", args, err)
		}
	}
}

// The default mirror lives under the cache directory, one per URL.
func TestMirrorDir(t *testing.T) {
	a, err := mirrorDir(&config.Follow{URL: "https://git.example.com/deploy/site.git"}, "/var/cache/gitblk")
	if err != nil || !strings.HasPrefix(a, "/var/cache/gitblk/mirrors/site-") || !strings.HasSuffix(a, ".git") {
		t.Errorf("mirrorDir = %q, %v", a, err)
	}
	b, _ := mirrorDir(&config.Follow{URL: "https://other.example.com/deploy/site.git"}, "/var/cache/gitblk")
	c, _ := mirrorDir(&config.Follow{URL: "git@host:../../etc"}, "/var/cache/gitblk")
	if a == b || !strings.HasPrefix(c, "/var/cache/gitblk/mirrors/") || strings.Contains(c, "..") {
		t.Errorf("mirror dirs %q %q %q", a, b, c)
	}
	if d, _ := mirrorDir(&config.Follow{URL: "x", Dir: "/srv/m.git"}, "/var/cache/gitblk"); d != "/srv/m.git" {
		t.Errorf("follow-dir ignored: %q", d)
	}
}

// A connection pins its commit in the mirror until its export is
// released; a reload mirrors the remotes it adds and stops fetching those
// it drops.
func TestFollowPinAndReload(t *testing.T) {
	dir := t.TempDir()
	remote := func(name string) string {
		bare := filepath.Join(dir, name+".git")
		testutil.Git(t, dir, "init", "-q", "--bare", "-b", "main", bare)
		work := testutil.NewRepo(t)
		testutil.WriteFile(t, work, "index.html", []byte(name+"\n"), 0o644)
		testutil.CommitAll(t, work, name)
		testutil.Git(t, work, "push", "-q", bare, "main")
		return "file://" + bare
	}
	one, two := remote("one"), remote("two")
	cfgPath := filepath.Join(dir, "c.toml")
	write := func(doc string) {
		if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exp := func(name, url string) string {
		return fmt.Sprintf("[export.%s]\nfollow = %q\nfollow-every = \"1h\"\nref = \"main\"\n", name, url)
	}
	write(exp("a", one) + exp("a-fat", one) + "format = \"fat\"\n")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := metrics.New()
	repos := newRepoSet(0, filepath.Join(dir, "cache"))
	defer repos.close()
	fol := newFollowSet(ctx, log, reg, cfg.CacheDir)
	defer fol.close()
	repos.follow = fol
	set, err := prepare(cfg, repos)
	if err != nil {
		t.Fatal(err)
	}
	if fol.len() != 1 || repos.len() != 1 {
		t.Fatalf("two exports of one remote: %d mirrors, %d repositories", fol.len(), repos.len())
	}
	s := newServer(log, set, repos, func() (*config.Config, error) { return config.Load(cfgPath) })
	s.reg, s.follow = reg, fol
	if errs := s.warm(nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	mirror := set.exports["a"].m.GitDir()
	peer := nbd.Peer{Network: "unix", Addr: &net.UnixAddr{Net: "unix"}, Cred: &nbd.Cred{PID: 1}}
	x, err := s.resolve(ctx, "a", peer)
	if err != nil {
		t.Fatal(err)
	}
	commit := strings.Fields(x.Description)[4]
	if got := testutil.Git(t, mirror, "for-each-ref", "--format=%(refname)", "refs/gitblk/"); got != "refs/gitblk/pin/"+commit {
		t.Errorf("pins with a connection open: %q, want refs/gitblk/pin/%s", got, commit)
	}
	if st := reg.Status(); len(st.Exports) != 2 || st.Exports[0].Commit != commit || len(st.Follow) != 1 || st.Follow[0].OK != 1 {
		t.Errorf("status: %+v", st)
	}

	write(exp("a", one) + exp("b", two))
	if err := s.reload(); err != nil {
		t.Fatal(err)
	}
	if fol.len() != 2 {
		t.Errorf("after adding a remote: %d mirrors", fol.len())
	}
	write(exp("b", two))
	if err := s.reload(); err != nil {
		t.Fatal(err)
	}
	if fol.len() != 1 {
		t.Errorf("after dropping a remote: %d mirrors", fol.len())
	}
	// The connection opened before still holds its pin, until it closes.
	if got := testutil.Git(t, mirror, "for-each-ref", "refs/gitblk/"); got == "" {
		t.Error("a reload dropped the pin of an open connection")
	}
	x.Release()
	if got := testutil.Git(t, mirror, "for-each-ref", "refs/gitblk/"); got != "" {
		t.Errorf("pin left after release: %q", got)
	}
	// A remote that cannot be fetched into an empty mirror fails the reload, naming the line.
	write(exp("b", two) + exp("c", "file://"+filepath.Join(dir, "missing.git")))
	err = s.reload()
	if err == nil || !strings.Contains(err.Error(), "c.toml:6: export.c.follow: ") || !strings.Contains(err.Error(), "first fetch into the empty mirror") {
		t.Errorf("reload with a missing remote: %v", err)
	}
	if fol.len() != 1 {
		t.Errorf("after a failed reload: %d mirrors", fol.len())
	}

	// build and mount take a mirror as it is, without fetching.
	cacheDir := fmt.Sprintf("cache-dir = %q\n", filepath.Join(dir, "cache"))
	write(cacheDir + exp("b", two))
	ef := exportFlags{config: cfgPath, export: "b"}
	img, err := ef.openExport()
	if err != nil {
		t.Fatalf("an export of a mirror, from its config: %v", err)
	}
	img.close()
	write(cacheDir + exp("d", "file://"+filepath.Join(dir, "never.git")))
	ef.export = "d"
	if _, err := ef.openExport(); err == nil || !strings.Contains(err.Error(), "no mirror of file://") {
		t.Errorf("an export whose mirror was never made: %v", err)
	}
}
