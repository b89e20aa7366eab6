package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/inflate"
	"github.com/gitblk/gitblk/internal/testutil"
)

// TestServeBuiltWithGoAlone builds gitblk as a machine with only Go would
// (no C compiler in PATH, so without cgo), serves a repository with it
// under each GITBLK_INFLATE value, and reads the export with nbdcopy: the
// files come back whole from a packed and a loose object, and the
// start-up log names the inflater in use, with the reason when it is not
// the one asked for.
func TestServeBuiltWithGoAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gitblk: not in -short")
	}
	nbdcopy := testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	testutil.NeedTool(t, "bsdtar", "libarchive-tools")
	bin := testutil.BuildWithGoAlone(t, ".")
	if out := testutil.Run(t, "go", "version", "-m", bin); !bytes.Contains(out, []byte("CGO_ENABLED=0")) {
		t.Fatalf("the Go-alone build is not CGO_ENABLED=0:\n%s", out)
	}

	repo := testutil.NewRepo(t)
	packed := bytes.Repeat([]byte("packed and inflated whole or as a stream\n"), 3000)
	loose := bytes.Repeat([]byte("a loose object, inflated as a stream\n"), 2000)
	testutil.WriteFile(t, repo, "packed.txt", packed, 0o644)
	testutil.CommitAll(t, repo, "packed")
	testutil.Git(t, repo, "repack", "-a", "-d", "-q")
	testutil.WriteFile(t, repo, "dir/loose.txt", loose, 0o644)
	testutil.CommitAll(t, repo, "loose")

	sockDir, err := os.MkdirTemp("", "gitblk-goalone-") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)

	// The inflater each GITBLK_INFLATE value gives where its library loads.
	want := map[string]string{"go": inflate.Go().Name(), "bogus": ""}
	for _, kind := range []string{inflate.KindZlib, inflate.KindLibdeflate} {
		if f, err := inflate.Load(kind); err == nil {
			want[kind] = f.Name()
		} else {
			t.Logf("%s does not load here: %v", kind, err)
		}
	}
	// Unset: the best that loads.
	want[""] = inflate.Go().Name()
	for _, kind := range []string{inflate.KindZlib, inflate.KindLibdeflate} {
		if name, ok := want[kind]; ok {
			want[""] = name
		}
	}
	for v, name := range want {
		t.Run("GITBLK_INFLATE="+v, func(t *testing.T) {
			sock := filepath.Join(sockDir, v+".sock")
			logs := &testutil.LogBuffer{}
			cmd := exec.Command(bin, "serve", "--cache-dir", t.TempDir(), "--listen", "unix:"+sock, repo, "main")
			cmd.Env = append(os.Environ(), inflate.EnvVar+"="+v) // "" is as unset
			cmd.Stderr = logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
			}()
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(logs.String(), "msg=serving") {
				if time.Now().After(deadline) {
					t.Fatalf("serve did not start:\n%s", logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			line := logs.String()
			switch {
			case v == "bogus":
				if !strings.Contains(line, `GITBLK_INFLATE=\"bogus\" is none of`) {
					t.Errorf("an unknown GITBLK_INFLATE is not named in the log:\n%s", line)
				}
			case !strings.Contains(line, `inflater="`+name):
				t.Errorf("log does not name inflater %q:\n%s", name, line)
			}

			img := testutil.Run(t, nbdcopy, "nbd+unix:///?socket="+sock, "-")
			for file, data := range map[string][]byte{"packed.txt": packed, "dir/loose.txt": loose} {
				cmd := exec.Command("bsdtar", "-xOf", "-", file)
				cmd.Stdin = bytes.NewReader(img)
				got, err := cmd.Output()
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s from the export: %d bytes, %v; want %d bytes", file, len(got), err, len(data))
				}
			}
		})
	}
}
