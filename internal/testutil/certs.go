package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// openssl runs openssl in dir and fails the test, with openssl's standard
// error, unless it succeeds.
func openssl(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:"+os.Getenv("PATH"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
}

// MakeCA makes a P-256 certificate authority with common name cn in dir
// (created if missing): ca-key.pem and ca-cert.pem, valid for two days.
func MakeCA(t testing.TB, dir, cn string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	openssl(t, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "ca-key.pem", "-out", "ca-cert.pem", "-days", "2", "-subj", "/CN="+cn,
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
}

// MakeCert makes name-key.pem and name-cert.pem in caDir, a certificate
// for common name cn signed by the CA MakeCA made there. ext holds the
// x509v3 extension lines (subjectAltName, extendedKeyUsage); the key usage
// for TLS is added.
func MakeCert(t testing.TB, caDir, name, cn, ext string) {
	t.Helper()
	openssl(t, caDir, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", name+"-key.pem", "-out", name+".csr", "-subj", "/CN="+cn)
	extFile := filepath.Join(caDir, name+".ext")
	if err := os.WriteFile(extFile, []byte(ext+"\nkeyUsage=critical,digitalSignature,keyEncipherment\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	openssl(t, caDir, "x509", "-req", "-in", name+".csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
		"-CAcreateserial", "-out", name+"-cert.pem", "-days", "2", "-extfile", name+".ext")
}

// CopyFile copies file from to to (mode 0600), failing the test on error.
func CopyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
