package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// The metrics listener and the status document never name a secret
// export, before or after an admitted client reads it: its connections
// and bytes count under one label.
func TestMetricsHideSecretExports(t *testing.T) {
	s := setupSecrets(t)
	sock := filepath.Join(s.dir, "m.sock")
	mport := testutil.FreePort(t)
	cfgPath := filepath.Join(s.dir, "m.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("metrics-listen = \"127.0.0.1:%d\"\n", mport)+s.config(sock, testutil.FreePort(t), "")), 0o600)
	startServe(t, "--config", cfgPath)
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", mport, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	check := func(when string) {
		for _, path := range []string{"/metrics", "/status"} {
			body := get(path)
			if strings.Contains(body, "keys") {
				t.Errorf("%s, %s names a secret export:\n%s", when, path, body)
			}
			if !strings.Contains(body, "site") {
				t.Errorf("%s, %s does not name the public export, so proves nothing:\n%s", when, path, body)
			}
		}
	}
	// The exports are recorded as they are laid out, after "serving".
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(get("/metrics"), `export="site"`); {
		if time.Now().After(deadline) {
			t.Fatalf("the public export never shows in /metrics:\n%s", get("/metrics"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	check("at start")
	good := clientDir(t, filepath.Join(s.dir, "c-good"), s.ca, s.ca, "vm1")
	img := sh(t, "", nil, "nbdcopy", "nbds+unix:///keys?socket="+sock+"&tls-certificates="+good, "-")
	sh(t, "", nil, "nbdcopy", "nbd+unix:///site?socket="+sock, "-")
	check("after reads")
	if m := get("/metrics"); !strings.Contains(m, `export="`+secretLabel+`"`) {
		t.Errorf("no series for the secret export's reads under %q:\n%s", secretLabel, m)
	} else if !bytes.Contains(img, []byte(plaintextMarker)) {
		t.Error("the admitted client did not read the secret")
	}
}
