package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/policy"
)

const example = `# gitblk serve --config example.toml
cache-size = "64M"
max-secret-memory = 8388608

[tls]
certificates = "/etc/gitblk/tls"

[[listen]]
address = "unix:/run/gitblk/gitblk.sock"

[[listen]]
address = "0.0.0.0:10809"

[export.site]
repository = "/srv/site.git"
ref = "main"
format = "fat"
sector-size = 4096

[export.releases]
repository = "/srv/site.git"
refs = ["refs/tags/*"]
format-suffix = true

[export.keys]
repository = "/srv/keys.git"
ref = "main"
secret = true
decrypt = "/etc/gitblk/host.key"
max-secret-file = "64K"
allow = [
  { uid = [0, 1000] },
  { cert-cn = ["vm-*"], source = ["192.168.1.0/24"] },
]

[[export.keys.allow]]
cert-dns = ["*.example.org"]
`

func TestParseExample(t *testing.T) {
	_, err := Parse([]byte(example), "example.toml")
	// Inline "allow" and [[export.keys.allow]] both define the array: TOML forbids that.
	if err == nil {
		t.Fatal("an array given inline and extended by [[...]] was accepted")
	}
	doc := strings.Replace(example, "]\n\n[[export.keys.allow]]\ncert-dns = [\"*.example.org\"]\n", "  { cert-dns = [\"*.example.org\"] },\n]\n", 1)
	c, err := Parse([]byte(doc), "example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.CacheSize != 64<<20 || c.MaxSecretMemory != 8<<20 || c.TLS.Certificates != "/etc/gitblk/tls" {
		t.Errorf("globals: %+v", c)
	}
	if len(c.Listen) != 2 || c.Mode(c.Listen[0]) != TLSOn || c.Mode(c.Listen[1]) != TLSRequire {
		t.Errorf("listeners: %+v, modes %s %s", c.Listen, c.Mode(c.Listen[0]), c.Mode(c.Listen[1]))
	}
	var names []string
	for _, x := range c.Exports {
		names = append(names, x.Name)
	}
	if strings.Join(names, ",") != "keys,releases,site" {
		t.Errorf("exports %q", names)
	}
	site := c.Export("site")
	if site.Image.Options("") != (imager.Options{Format: imager.FormatFAT, SectorSize: 4096}) || site.Ref != "main" || site.Secret {
		t.Errorf("site: %+v", site)
	}
	rel := c.Export("releases")
	if !rel.FormatSuffix || len(rel.Refs) != 1 || rel.Image.Options("") != (imager.Options{Format: imager.FormatTar}) ||
		rel.Image.Options(imager.FormatFAT) != (imager.Options{Format: imager.FormatFAT, SectorSize: 512}) {
		t.Errorf("releases: %+v", rel)
	}
	keys := c.Export("keys")
	if !keys.Secret || !keys.Access.Secret || keys.Decrypt != "/etc/gitblk/host.key" || keys.MaxSecretFile != 64<<10 {
		t.Errorf("keys: %+v", keys)
	}
	wantRules := []policy.Rule{
		{UIDs: []uint32{0, 1000}},
		{CertCN: []string{"vm-*"}, Sources: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}},
		{CertDNS: []string{"*.example.org"}},
	}
	if len(keys.Access.Rules) != len(wantRules) {
		t.Fatalf("rules %+v", keys.Access.Rules)
	}
	for i, r := range wantRules {
		if r.String() != keys.Access.Rules[i].String() {
			t.Errorf("rule %d = %s, want %s", i, &keys.Access.Rules[i], &r)
		}
	}
	if c.Export("nope") != nil {
		t.Error("Export(nope) != nil")
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte("[export.\"\"]\nrepository = \".\"\nref = \"HEAD\"\n"), "d.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listen) != 1 || c.Listen[0].Address != DefaultListen || c.Mode(c.Listen[0]) != TLSOff {
		t.Errorf("listen %+v", c.Listen)
	}
	if c.MaxSecretMemory != DefaultMaxSecretMemory || c.Exports[0].Image.Format != imager.FormatTar || c.HandshakeTimeout != 0 {
		t.Errorf("defaults %+v", c)
	}
	c, err = Parse([]byte("handshake-timeout = \"250ms\"\n[export.\"\"]\nrepository = \".\"\nref = \"HEAD\"\n"), "d.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.HandshakeTimeout != 250*time.Millisecond {
		t.Errorf("handshake-timeout 250ms read as %v", c.HandshakeTimeout)
	}
	c, err = Parse([]byte("[export.k]\nrepository = \".\"\nref = \"HEAD\"\nsecret = true\ndecrypt = \"id\"\nallow = [{uid = [1]}]\n"), "d.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Exports[0].MaxSecretFile != DefaultMaxSecretFile {
		t.Errorf("max-secret-file default %d", c.Exports[0].MaxSecretFile)
	}
}

// Every error names the file, the line and the key.
func TestErrors(t *testing.T) {
	base := "[export.a]\nrepository = \".\"\nref = \"HEAD\"\n"
	tests := []struct {
		doc  string
		want string
	}{
		{"bogus = 1\n" + base, "f.toml:1: bogus: unknown key"},
		{base + "colour = \"red\"\n", "f.toml:4: export.a.colour: unknown key"},
		{base + "allow = [{ uid = [1], nick = \"x\" }]\n", "f.toml:4: export.a.allow[0].nick: unknown key"},
		{base + "[export.a]\nrepository = \"b\"\n", "f.toml:4:"},
		{base + "format = \"iso\"\n", "f.toml:4: export.a.format: unknown format \"iso\""},
		{base + "fat-type = 12\n", "f.toml:4: export.a.fat-type: want 16 or 32, got 12"},
		{base + "sector-size = \"big\"\n", "f.toml:4:"},
		{base + "allow = [{ uid = [-1] }]\n", "f.toml:4: export.a.allow[0].uid: uid -1 out of range"},
		{base + "allow = [{ source = [\"10.0.0.1/8\"] }]\n", "f.toml:4: export.a.allow[0].source: CIDR \"10.0.0.1/8\" has host bits set"},
		{base + "allow = [{ source = [\"nonsense\"] }]\n", "f.toml:4: export.a.allow[0].source: bad address or CIDR"},
		{base + "\n[[export.a.allow]]\nuid = [1]\nsource = [\"10.0.0.0/8\"]\n", "f.toml:5: export.a.allow[0]: policy: a rule cannot require both"},
		{base + "[[export.a.allow]]\ncert-cn = [\"[\"]\n", "f.toml:4: export.a.allow[0]: policy: bad pattern"},
		{base + "allow = [{}]\n", "f.toml:4: export.a.allow[0]: policy: an empty rule"},
		{base + "secret = true\n", "f.toml:1: export.a: a secret export needs at least one allow rule"},
		{base + "decrypt = \"id\"\n", "f.toml:4: export.a.decrypt: a decrypting export must be secret"},
		{base + "max-secret-file = \"1M\"\n", "f.toml:4: export.a.max-secret-file: only applies with decrypt"},
		{base + "format-suffix = true\n", "f.toml:4: export.a.format-suffix: only applies with refs"},
		{"[export.a]\nrepository = \".\"\nrefs = [\"tags/*\"]\n", "f.toml:3: export.a.refs: pattern \"tags/*\""},
		{"[export.a]\nrepository = \".\"\n", "f.toml:1: export.a: missing key ref"},
		{"[export.a]\nref = \"x\"\n", "f.toml:1: export.a: missing key repository"},
		{"[export.\"a/b\"]\nrepository = \".\"\nref = \"x\"\n", "f.toml:1: export.\"a/b\": export name \"a/b\""},
		{"cache-size = \"lots\"\n" + base, "f.toml:1: cache-size: bad size \"lots\""},
		{"handshake-timeout = \"soon\"\n" + base, "f.toml:1: handshake-timeout: want a duration"},
		{"handshake-timeout = \"0s\"\n" + base, "f.toml:1: handshake-timeout: want a positive duration"},
		{"handshake-timeout = \"-1s\"\n" + base, "f.toml:1: handshake-timeout: want a positive duration"},
		{"handshake-timeout = 10\n" + base, "f.toml:1:"},
		{"cache-size = true\n" + base, "f.toml:1: cache-size: want a byte count"},
		{"[tls]\nmode = \"maybe\"\n" + base, "f.toml:2: tls.mode: unknown TLS mode \"maybe\""},
		{"[tls]\nmode = \"on\"\n" + base, "f.toml: listen[0]: TLS mode on needs tls.certificates"},
		{"[[listen]]\naddress = \"x\"\n" + base, "f.toml:2: listen[0].address: \"x\": want HOST:PORT"},
		{"[[listen]]\naddress = \"unix:/s\"\n[[listen]]\naddress = \"unix:/s\"\n" + base, "f.toml:4: listen[1].address: duplicate listener"},
		{"[[listen]]\naddress = \"unix:/s\"\ntls = \"on\"\n" + base, "f.toml:1: listen[0]: TLS mode on needs tls.certificates"},
		{"", "f.toml: no exports"},
		{"[export.a\n", "f.toml:1:"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.doc), "f.toml")
		var ce *Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q)\n  = %v\n  want an *Error starting %q", tt.doc, err, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml: cannot read") {
		t.Errorf("Load(missing) = %v", err)
	}
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte("[tls]\ncertificates = \"tls\"\n[export.a]\nrepository = \"site.git\"\nref = \"HEAD\"\n"+
		"[export.b]\nrepository = \"/srv/b.git\"\nref = \"HEAD\"\nsecret = true\ndecrypt = \"../id\"\nallow = [{uid=[0]}]\n"), 0o644)
	c, err := Load(p)
	if err != nil || c.File != p {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	// Relative paths are taken from the file's directory.
	if c.Export("a").Repository != filepath.Join(dir, "site.git") || c.Export("b").Repository != "/srv/b.git" ||
		c.Export("b").Decrypt != filepath.Join(filepath.Dir(dir), "id") || c.TLS.Certificates != filepath.Join(dir, "tls") {
		t.Errorf("paths: %q %q %q %q", c.Export("a").Repository, c.Export("b").Repository, c.Export("b").Decrypt, c.TLS.Certificates)
	}
	if err := c.Export("a").Errorf("repository", "cannot open: %s", "gone"); err.Error() != p+":4: export.a.repository: cannot open: gone" {
		t.Errorf("Export.Errorf = %v", err)
	}
	big := make([]byte, maxFileSize+1)
	os.WriteFile(p, big, 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v", err)
	}
}

func TestEqual(t *testing.T) {
	doc := "[export.a]\nrepository = \"/srv/a.git\"\nref = \"HEAD\"\n"
	a, _ := Parse([]byte(doc), "one.toml")
	b, _ := Parse([]byte("\n\n"+doc), "two.toml")
	if !a.Equal(b) {
		t.Error("same config from two files is not Equal")
	}
	built := &Config{Exports: []Export{{Name: "a", Repository: "/srv/a.git", Ref: "HEAD", Image: Image{Format: imager.FormatTar, SectorSize: 512}}}}
	if err := built.Validate(); err != nil {
		t.Fatal(err)
	}
	if !a.Equal(built) {
		t.Errorf("a built config is not Equal to the parsed one:\n%+v\n%+v", a, built)
	}
	built.Exports[0].Ref = "main"
	if a.Equal(built) {
		t.Error("different refs are Equal")
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]int64{"0": 0, "512": 512, "4K": 4096, "64M": 64 << 20, "64MiB": 64 << 20, "1g": 1 << 30, "2T": 2 << 40}
	for s, want := range good {
		if got, err := ParseBytes(s); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "M", "-1", "1.5G", "12X", "99999999999T", "1 G"} {
		if _, err := ParseBytes(s); err == nil {
			t.Errorf("ParseBytes(%q) accepted", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte("[export.a]\nrepository = \".\"\nref = \"HEAD\"\nallow = [{uid=[1]}]\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := Parse(doc, "fuzz.toml")
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			return
		}
		if len(c.Exports) == 0 || len(c.Listen) == 0 {
			t.Fatalf("valid config without exports or listeners: %+v", c)
		}
	})
}
