package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// source rules see an IPv4 client of a dual-stack listener ([::]:PORT,
// where it arrives as ::ffff:a.b.c.d) as its IPv4 address, whether the
// rule writes the prefix as IPv4 or IPv4-mapped IPv6.
func TestSourceRulesDualStack(t *testing.T) {
	testutil.NeedTool(t, "git", "git")
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	if l, err := net.Listen("tcp", "[::]:0"); err != nil {
		t.Skipf("no IPv6 socket here, so no dual-stack listener: %v", err)
	} else {
		l.Close()
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	gitRepo(t, repo, map[string][]byte{"a": []byte("a")})
	port := testutil.FreePort(t)
	export := func(name, source string) string {
		return fmt.Sprintf("[export.%s]\nrepository = %q\nref = \"main\"\nallow = [{ source = [%q] }]\n", name, repo, source)
	}
	cfg := fmt.Sprintf("[[listen]]\naddress = \"[::]:%d\"\n", port) +
		export("v4", "127.0.0.0/8") + export("mapped", "::ffff:127.0.0.0/104") + export("one", "127.0.0.1") +
		export("other", "10.0.0.0/8") + export("v6", "::1/128")
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte(cfg), 0o600)
	logs := startServe(t, "--config", p)
	for _, tt := range []struct {
		name string
		ok   bool
	}{{"v4", true}, {"mapped", true}, {"one", true}, {"other", false}, {"v6", false}} {
		_, err := shErr("", nil, "nbdinfo", "--size", fmt.Sprintf("nbd://127.0.0.1:%d/%s", port, tt.name))
		if (err == nil) != tt.ok {
			t.Errorf("%s from 127.0.0.1: %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	waitLog(t, logs, "source 127.0.0.1 not admitted")
	if strings.Contains(logs.String(), "source ::ffff:") {
		t.Errorf("a peer logged in its mapped form:\n%s", logs.String())
	}
}
