package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Exports may follow a remote; exports of one remote share its settings.
func TestFollow(t *testing.T) {
	doc := `metrics-listen = "127.0.0.1:9410"

[export.site]
follow = "https://git.example.com/site.git"
follow-every = "30s"
follow-credentials = "site.credentials"
ref = "main"

[export.site-fat]
follow = "https://git.example.com/site.git"
follow-every = "30s"
follow-credentials = "site.credentials"
ref = "main"
format = "fat"

[export.tools]
follow = "ssh://git@git.example.com/tools.git"
follow-dir = "/var/lib/gitblk/tools.git"
follow-ssh-key = "/etc/gitblk/tools.key"
follow-known-hosts = "/etc/gitblk/known_hosts"
ref = "refs/tags/v1"

[export.local]
repository = "/srv/local.git"
ref = "main"
`
	c, err := Parse([]byte(doc), "/etc/gitblk/gitblk.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsListen != "127.0.0.1:9410" {
		t.Errorf("metrics-listen %q", c.MetricsListen)
	}
	site := c.Export("site").Follow
	want := Follow{URL: "https://git.example.com/site.git", Every: 30 * time.Second, Credentials: "/etc/gitblk/site.credentials"}
	if site == nil || *site != want || c.Export("site").Repository != "" {
		t.Errorf("site follows %+v (repository %q), want %+v", site, c.Export("site").Repository, want)
	}
	tools := c.Export("tools")
	if tools.Follow == nil || tools.Repository != "/var/lib/gitblk/tools.git" || tools.Follow.Dir != tools.Repository ||
		tools.Follow.SSHKey != "/etc/gitblk/tools.key" || tools.Follow.KnownHosts != "/etc/gitblk/known_hosts" {
		t.Errorf("tools: %+v follow %+v", tools, tools.Follow)
	}
	if c.Export("local").Follow != nil {
		t.Errorf("local follows %+v", c.Export("local").Follow)
	}
	// A relative follow-dir is taken from the file's directory.
	c, err = Parse([]byte("[export.a]\nfollow = \"file:///srv/a.git\"\nfollow-dir = \"mirrors/a.git\"\nref = \"main\"\n"), "/etc/gitblk/x.toml")
	if err != nil || c.Exports[0].Repository != filepath.FromSlash("/etc/gitblk/mirrors/a.git") {
		t.Errorf("relative follow-dir: %v, %+v", err, c)
	}
}

// Follow errors name the file, the line and the key, as every error does.
func TestFollowErrors(t *testing.T) {
	base := "[export.a]\nfollow = \"https://h/a.git\"\nref = \"main\"\n"
	other := "[export.b]\nfollow = \"https://h/a.git\"\nref = \"main\"\nformat = \"fat\"\n"
	tests := []struct{ doc, want string }{
		{base + "repository = \"/srv/a.git\"\n", "f.toml:4: export.a.repository: an export that follows a remote serves its mirror"},
		{base + "follow-every = \"soon\"\n", "f.toml:4: export.a.follow-every: want a duration"},
		{base + "follow-every = \"10ms\"\n", "f.toml:4: export.a.follow-every: 10ms is shorter than the 1s minimum"},
		{base + "follow-every = 60\n", "f.toml:4:"},
		{"[export.a]\nrepository = \".\"\nref = \"main\"\nfollow-every = \"1m\"\n", "f.toml:4: export.a.follow-every: only applies with follow"},
		{"[export.a]\nrepository = \".\"\nref = \"main\"\nfollow-ssh-key = \"k\"\n", "f.toml:4: export.a.follow-ssh-key: only applies with follow"},
		{"[export.a]\nfollow = \"https://u:pw@h/a.git\"\nref = \"main\"\n", "f.toml:2: export.a.follow: the URL carries a password"},
		{"[export.a]\nfollow = \"\"\nref = \"main\"\n", "f.toml:1: export.a: missing key repository (or follow"},
		{base + "follow-every = \"2m\"\n" + other, "f.toml:5: export.b.follow-every: export \"a\" follows the same remote with another follow-every (\"2m0s\")"},
		{base + other + "follow-dir = \"/m\"\n", "f.toml:8: export.b.follow-dir: export \"a\" follows the same remote with another follow-dir (\"\")"},
		{base + "follow-dir = \"/m\"\n[export.b]\nfollow = \"https://h/b.git\"\nref = \"main\"\nfollow-dir = \"/m\"\n", "f.toml:8: export.b.follow-dir: export \"a\" keeps the mirror of another remote"},
		{"metrics-listen = \"nowhere\"\n" + base, "f.toml:1: metrics-listen: \"nowhere\": want HOST:PORT"},
		{"metrics-listen = \"unix:/s\"\n[[listen]]\naddress = \"unix:/s\"\n" + base, "f.toml:1: metrics-listen: \"unix:/s\" is an NBD listener too"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.doc), "f.toml")
		var ce *Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q)\n  = %v\n  want an *Error starting %q", tt.doc, err, tt.want)
		}
	}
	for _, ok := range []string{"9410", ":9410", "0.0.0.0:9410", "unix:/run/gitblk/metrics.sock"} {
		if _, err := Parse([]byte("metrics-listen = \""+ok+"\"\n"+base), "f.toml"); err != nil {
			t.Errorf("metrics-listen %q: %v", ok, err)
		}
	}
}
