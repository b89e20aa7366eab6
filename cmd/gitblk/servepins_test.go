package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/internal/testutil"
	"github.com/gitblk/gitblk/nbd"
)

// TestServeImageBoundAcrossRepos: gitfs.MaxImages bounds the distinct
// images serve's connections hold over all its repositories together, not
// per repository: with half of them held in each of two repositories, one
// more is refused in either, an image already held is still served, and a
// release makes room again.
func TestServeImageBoundAcrossRepos(t *testing.T) {
	var doc strings.Builder
	for _, repoName := range []string{"a", "b"} {
		dir := testutil.NewRepo(t)
		for i := 0; i <= gitfs.MaxImages/2; i++ {
			testutil.WriteFile(t, dir, "f.txt", []byte(fmt.Sprintf("%s version %d\n", repoName, i)), 0o644)
			testutil.CommitAll(t, dir, "edit")
			testutil.Git(t, dir, "tag", fmt.Sprintf("v%d", i))
			fmt.Fprintf(&doc, "[export.%s%d]\nrepository = %q\nref = \"v%d\"\n", repoName, i, dir, i)
		}
	}
	cfgPath := filepath.Join(t.TempDir(), "pins.toml")
	if err := os.WriteFile(cfgPath, []byte(doc.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	repos := newRepoSet(0, t.TempDir())
	defer repos.close()
	set, err := prepare(cfg, repos)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(slog.New(slog.NewTextHandler(&testutil.LogBuffer{}, nil)), set, repos, func() (*config.Config, error) { return config.Load(cfgPath) })
	peer := nbd.Peer{Network: "unix", Addr: &net.UnixAddr{Net: "unix"}, Cred: &nbd.Cred{PID: 1, UID: 0, GID: 0}}
	resolve := func(name string) (*nbd.Export, error) { return srv.resolve(context.Background(), name, peer) }

	var held []*nbd.Export
	for i := 0; i < gitfs.MaxImages/2; i++ {
		for _, repoName := range []string{"a", "b"} {
			x, err := resolve(fmt.Sprintf("%s%d", repoName, i))
			if err != nil {
				t.Fatalf("image %d of %s: %v", i, repoName, err)
			}
			held = append(held, x)
		}
	}
	last := fmt.Sprint(gitfs.MaxImages / 2)
	for _, name := range []string{"a" + last, "b" + last} {
		if _, err := resolve(name); !errors.Is(err, gitfs.ErrTooManyImages) {
			t.Errorf("%s, one image more than gitfs.MaxImages over both repositories: %v", name, err)
		}
	}
	again, err := resolve("a0") // already held: always served
	if err != nil {
		t.Fatalf("an image already held: %v", err)
	}
	again.Release()
	held[0].Release() // a0
	held = held[1:]
	x, err := resolve("b" + last)
	if err != nil {
		t.Fatalf("after a release in the other repository: %v", err)
	}
	x.Release()
	for _, x := range held {
		x.Release()
	}
}
