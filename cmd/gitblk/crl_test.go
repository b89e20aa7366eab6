package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// writeCRL writes a CRL signed by the CA in caDir revoking the given
// certificates of caDir (NAME-cert.pem), as ca-crl.pem in dir.
func writeCRL(t *testing.T, caDir, dir string, names ...string) {
	t.Helper()
	ca := leafCert(t, filepath.Join(caDir, "ca-cert.pem"))
	kb, _ := os.ReadFile(filepath.Join(caDir, "ca-key.pem"))
	blk, _ := pem.Decode(kb)
	if blk == nil {
		t.Fatal("ca-key.pem: no PEM")
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var entries []x509.RevocationListEntry
	for _, n := range names {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: leafCert(t, filepath.Join(caDir, n+"-cert.pem")).SerialNumber, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()),
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries},
		ca, key.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ca-crl.pem"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o600)
}

// A ca-crl.pem in the certificate directory (nbdkit reads one there) is
// checked: a revoked client certificate fails the handshake, also after a
// SIGHUP adds the list; a list signed by another CA is an error.
func TestServeClientCRL(t *testing.T) {
	s := setupSecrets(t)
	testutil.MakeCert(t, s.ca, "vm2", "vm-2", "extendedKeyUsage=clientAuth")
	srvDir := filepath.Join(s.dir, "server-tls")
	sock := filepath.Join(s.dir, "crl.sock")
	logs := startServe(t, "--listen", "unix:"+sock, "--tls-certificates", srvDir, "--secret", "--decrypt", s.identity,
		"--allow", "cert-cn=vm-*", s.keys, "main")
	uri := func(certs string) string { return "nbds+unix:///?socket=" + sock + "&tls-certificates=" + certs }
	vm1 := clientDir(t, filepath.Join(s.dir, "c-vm1"), s.ca, s.ca, "vm1")
	vm2 := clientDir(t, filepath.Join(s.dir, "c-vm2"), s.ca, s.ca, "vm2")
	before := sh(t, "", nil, "nbdcopy", uri(vm1), "-")
	// The CA revokes vm-1; a reload reads the list.
	writeCRL(t, s.ca, srvDir, "vm1")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog(t, logs, "msg=reloaded")
	if out, err := shErr("", nil, "nbdcopy", uri(vm1), "-"); err == nil || len(out) > 0 {
		t.Errorf("revoked vm-1 read %d bytes (err %v)", len(out), err)
	}
	waitLog(t, logs, "is revoked by ca-crl.pem")
	if got := sh(t, "", nil, "nbdcopy", uri(vm2), "-"); !bytes.Equal(got, before) {
		t.Error("vm-2, not revoked: other bytes")
	}
	// A list the CA did not sign: the reload fails, the old list stays.
	writeCRL(t, s.otherCA, srvDir, "vm1")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog(t, logs, "not signed by a certificate of ca-cert.pem")
	if out, err := shErr("", nil, "nbdcopy", uri(vm1), "-"); err == nil || len(out) > 0 {
		t.Errorf("after a bad CRL reload, revoked vm-1 read %d bytes (err %v)", len(out), err)
	}
	if _, err := loadTLS(srvDir); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("loadTLS with a CRL of another CA: %v", err)
	}
}
