package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitblk/gitblk/metrics"
)

// statusRegistry is a registry with one deploy, two connections and a
// failed fetch after a good one.
func statusRegistry() *metrics.Registry {
	r := metrics.New()
	obs := metrics.NewNBD[int](r)
	obs.ConnOpened(1)
	obs.ExportChosen(1, "")
	obs.Request("", "read", 3<<20, time.Millisecond, nil)
	obs.ConnOpened(2)
	obs.ExportChosen(2, "fat")
	r.SetExport(metrics.Export{Name: "", Ref: "main", Commit: strings.Repeat("1a", 20), Format: "tar"})
	r.SetExport(metrics.Export{Name: "fat", Ref: "main", Commit: strings.Repeat("1a", 20), Format: "fat"})
	now := time.Now()
	r.Fetched("https://git.example.com/site.git", now.Add(-90*time.Second), 300*time.Millisecond, true, nil)
	r.Fetched("https://git.example.com/site.git", now.Add(-30*time.Second), 2*time.Second, false, errors.New("follow: fetch: git fetch: fatal: unable to access"))
	return r
}

func serveRegistry(t *testing.T, r *metrics.Registry, network, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := r.Server()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l
}

func TestStatusPrintsExportsAndFetches(t *testing.T) {
	r := statusRegistry()
	l := serveRegistry(t, r, "tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	serveRegistry(t, r, "unix", sock)

	for _, addr := range []string{l.Addr().String(), ":" + itoa(port), itoa(port), "http://" + l.Addr().String() + "/", "unix:" + sock} {
		var out, errOut bytes.Buffer
		if err := runStatus(context.Background(), []string{addr}, &out, &errOut); err != nil {
			t.Fatalf("status %s: %v\n%s", addr, err, errOut.String())
		}
		s := out.String()
		if addr == "unix:"+sock {
			t.Logf("gitblk status %s:\n%s", addr, s)
		}
		for _, want := range []string{
			"2 connections open",
			`"" (default)  main  tar     ` + strings.Repeat("1a", 20) + `  1     1      3.0 MiB`,
			"fat           main  fat     " + strings.Repeat("1a", 20) + "  1     1      0 B",
			"https://git.example.com/site.git  30s ago, took 2.0s  failed  1m30s ago  1   1       1",
			"last fetch from https://git.example.com/site.git failed: follow: fetch: git fetch: fatal: unable to access",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("status %s lacks %q:\n%s", addr, want, s)
			}
		}
	}

	var out bytes.Buffer
	if err := runStatus(context.Background(), []string{"--json", l.Addr().String()}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var st metrics.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || len(st.Exports) != 2 || st.Exports[0].Commit != strings.Repeat("1a", 20) {
		t.Errorf("--json: %v %+v", err, st)
	}
}

func TestStatusErrors(t *testing.T) {
	var out bytes.Buffer
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	if err := runStatus(context.Background(), []string{addr}, &out, &out); err == nil || !strings.Contains(err.Error(), "--metrics-listen") {
		t.Errorf("status of a closed port: %v", err)
	}
	if err := runStatus(context.Background(), []string{"not an address"}, &out, &out); !errors.Is(err, errUsage) {
		t.Errorf("status of a bad address: %v", err)
	}
	if err := runStatus(context.Background(), nil, &out, &out); !errors.Is(err, errUsage) {
		t.Errorf("status without an address: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
