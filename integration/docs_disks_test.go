package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsDiskLinesAttach runs block-gitblk's add, with stub commands, on
// the target of every xl disk line in the README and the contrib guides:
// each parses with the script's real target syntax, names an export the
// README's secrets config declares (or the shorthand's tar and fat), and
// its TLS options reach nbd-client, with the server's name checked.
func TestDocsDiskLinesAttach(t *testing.T) {
	exports := map[string]bool{"site": true, "keys-site": true, "tar": true, "fat": true}
	// The TLS directories the docs name, made here with the files the
	// script checks for.
	tlsDir := t.TempDir()
	for _, f := range []string{"ca-cert.pem", "client-cert.pem", "client-key.pem"} {
		mustWrite(t, filepath.Join(tlsDir, f), "test\n")
	}
	bk := hotplugBackend + "/"
	lines := 0
	for _, doc := range []string{"../README.md", "../contrib/xen/README.md", "../contrib/mirage/README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range xlDiskLine.FindAllString(string(b), -1) {
			i := strings.Index(line, "target=")
			if i < 0 {
				t.Errorf("%s: %s: no target=", doc, line)
				continue
			}
			lines++
			target := strings.TrimSuffix(line[i+len("target="):], "'")
			target = strings.ReplaceAll(target, "/etc/gitblk/xen-tls", tlsDir)
			e := newHotplugEnv(t, 3, map[string]string{bk + "params": target, bk + "mode": "r"})
			if out, err := e.run("add"); err != nil {
				t.Errorf("%s: %s: add: %v\n%s", doc, line, err, out)
				continue
			}
			calls := e.calls("nbd-client")
			if len(calls) != 1 {
				t.Errorf("%s: %s: nbd-client calls %q", doc, line, calls)
				continue
			}
			args := strings.Fields(calls[0])
			export := ""
			for j, a := range args {
				if a == "-N" && j+1 < len(args) {
					export = args[j+1]
				}
			}
			if !exports[export] {
				t.Errorf("%s: %s: export %q is none the README's config declares", doc, line, export)
			}
			if strings.Contains(target, "tls=") {
				for _, opt := range []string{"-certfile " + tlsDir + "/client-cert.pem", "-keyfile " + tlsDir + "/client-key.pem",
					"-cacertfile " + tlsDir + "/ca-cert.pem", "-tlshostname "} {
					if !strings.Contains(calls[0], opt) {
						t.Errorf("%s: %s: nbd-client %s: no %s", doc, line, calls[0], opt)
					}
				}
			}
		}
	}
	if lines < 6 {
		t.Errorf("found %d disk lines in the docs, want the data and secret volumes of each guide", lines)
	}
}
