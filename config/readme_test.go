package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/imager"
)

// tomlBlocks returns the ```toml blocks of a Markdown file.
func tomlBlocks(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return tomlBlocksOf(t, string(b))
}

// tomlBlocksOf returns the ```toml blocks of Markdown text.
func tomlBlocksOf(t *testing.T, md string) []string {
	t.Helper()
	var blocks []string
	rest := md
	for {
		i := strings.Index(rest, "```toml\n")
		if i < 0 {
			return blocks
		}
		rest = rest[i+len("```toml\n"):]
		j := strings.Index(rest, "```")
		if j < 0 {
			t.Fatal("a toml block does not end")
		}
		blocks = append(blocks, rest[:j])
		rest = rest[j:]
	}
}

// Every config the README shows is valid as written: its keys are the
// ones Parse knows, and it means what the text says.
func TestReadmeConfigs(t *testing.T) {
	readme := filepath.Join("..", "README.md")
	blocks := tomlBlocks(t, readme)
	if len(blocks) < 2 {
		t.Fatalf("%s: %d toml blocks, want the reference and the Secrets example", readme, len(blocks))
	}
	for i, doc := range blocks {
		c, err := Parse([]byte(doc), "/etc/gitblk/gitblk.toml")
		if err != nil {
			t.Errorf("README toml block %d: %v\n%s", i+1, err, doc)
			continue
		}
		for _, x := range c.Exports {
			if x.Decrypt != "" && (!x.Secret || len(x.Access.Rules) == 0) {
				t.Errorf("block %d: export %s decrypts but is not a secret export with rules", i+1, x.Name)
			}
		}
		for _, l := range c.Listen {
			if m := c.Mode(l); l.Unix() && m == TLSRequire {
				t.Errorf("block %d: %s requires TLS, yet the README reads it in clear", i+1, l.Address)
			}
		}
	}
	// The Secrets example: what its text promises.
	b, _ := os.ReadFile(readme)
	doc := string(b)
	i := strings.Index(doc, "\n## Secrets\n")
	if i < 0 {
		t.Fatal("README: no Secrets section")
	}
	section := doc[i+1:]
	if j := strings.Index(section[1:], "\n## "); j >= 0 {
		section = section[:j+1]
	}
	secretsBlocks := tomlBlocksOf(t, section)
	if len(secretsBlocks) != 1 {
		t.Fatalf("README Secrets section: %d toml blocks, want its one config", len(secretsBlocks))
	}
	c, err := Parse([]byte(secretsBlocks[0]), "/etc/gitblk/gitblk.toml")
	if err != nil {
		t.Fatal(err)
	}
	keys, site := c.Export("keys-site"), c.Export("site")
	if keys == nil || site == nil {
		t.Fatalf("the Secrets example has no exports site and keys-site: %+v", c.Exports)
	}
	if !keys.Secret || keys.Decrypt != "/etc/gitblk/host.key" || keys.MaxSecretFile != 64<<10 || len(keys.Access.Rules) != 2 ||
		keys.Access.Rules[0].UIDs[0] != 0 || keys.Access.Rules[1].CertCN[0] != "dom0-b.example.org" {
		t.Errorf("keys-site: %+v", keys)
	}
	if site.Secret || len(site.Access.Rules) != 0 || site.Image.Format != imager.FormatTar {
		t.Errorf("site: %+v", site)
	}
	if len(c.Listen) != 2 || c.Mode(c.Listen[0]) != TLSOn || c.Mode(c.Listen[1]) != TLSRequire {
		t.Errorf("listeners %+v: want a unix socket with TLS on and TCP with TLS required", c.Listen)
	}
}

// IPv4-mapped IPv6 prefixes are unmapped, as peer addresses are.
func TestParsePrefixMapped(t *testing.T) {
	for in, want := range map[string]string{"::ffff:10.0.0.0/104": "10.0.0.0/8", "::ffff:10.1.2.3": "10.1.2.3/32",
		"10.1.2.3": "10.1.2.3/32", "2001:db8::/32": "2001:db8::/32", "::ffff:0.0.0.0/96": "0.0.0.0/0"} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
}
