package nbd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// testCerts are certificates made for one test, in directories laid out as
// nbdkit, qemu and libnbd expect (ca-cert.pem, server-cert.pem,
// server-key.pem, client-cert.pem, client-key.pem).
type testCerts struct {
	dir      string // the CA, the server's and a client's certificates
	otherDir string // ca-cert.pem of the real CA, a client certificate from another CA
	noneDir  string // ca-cert.pem only: a client without a certificate
	server   *tls.Config
	clientCN string
	// Go clients: with the good client certificate, and with the other CA's.
	client, otherClient *tls.Config
}

// issuer is a CA that signs certificates.
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

var serial atomic.Int64

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t testing.TB, cn string) *issuer {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"gitblk test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{cert: cert, key: key, der: der}
}

// issue signs a leaf certificate: a server's (with localhost names) or a client's.
func (ca *issuer) issue(t testing.TB, cn string, server bool) (certDER []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	key = newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"gitblk test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t testing.TB, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
}

func tlsCert(der []byte, key *ecdsa.PrivateKey) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// makeCerts makes a CA, a server certificate for localhost, 127.0.0.1 and
// ::1, a client certificate, and a client certificate from another CA.
func makeCerts(t testing.TB) *testCerts {
	t.Helper()
	root := t.TempDir()
	tc := &testCerts{
		dir:      filepath.Join(root, "pki"),
		otherDir: filepath.Join(root, "other"),
		noneDir:  filepath.Join(root, "none"),
		clientCN: "guest-1.example",
	}
	for _, d := range []string{tc.dir, tc.otherDir, tc.noneDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The other CA has the real one's name, so clients (gnutls picks its
	// certificate by the CA names the server asks for) send its certificate
	// and the server must see through it.
	ca, other := newCA(t, "gitblk test CA"), newCA(t, "gitblk test CA")
	srvDER, srvKey := ca.issue(t, "localhost", true)
	cliDER, cliKey := ca.issue(t, tc.clientCN, false)
	badDER, badKey := other.issue(t, tc.clientCN, false)

	writePEM(t, filepath.Join(tc.dir, "ca-cert.pem"), "CERTIFICATE", ca.der)
	writePEM(t, filepath.Join(tc.dir, "server-cert.pem"), "CERTIFICATE", srvDER)
	writeKey(t, filepath.Join(tc.dir, "server-key.pem"), srvKey)
	writePEM(t, filepath.Join(tc.dir, "client-cert.pem"), "CERTIFICATE", cliDER)
	writeKey(t, filepath.Join(tc.dir, "client-key.pem"), cliKey)
	writePEM(t, filepath.Join(tc.otherDir, "ca-cert.pem"), "CERTIFICATE", ca.der)
	writePEM(t, filepath.Join(tc.otherDir, "client-cert.pem"), "CERTIFICATE", badDER)
	writeKey(t, filepath.Join(tc.otherDir, "client-key.pem"), badKey)
	writePEM(t, filepath.Join(tc.noneDir, "ca-cert.pem"), "CERTIFICATE", ca.der)

	// The server loads its files as a deployment would.
	pair, err := tls.LoadX509KeyPair(filepath.Join(tc.dir, "server-cert.pem"), filepath.Join(tc.dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(tc.dir, "ca-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca-cert.pem: no certificate")
	}
	tc.server = &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	tc.client = &tls.Config{
		RootCAs:      pool,
		ServerName:   "localhost",
		Certificates: []tls.Certificate{tlsCert(cliDER, cliKey)},
	}
	bad := tlsCert(badDER, badKey)
	tc.otherClient = &tls.Config{
		RootCAs:    pool,
		ServerName: "localhost",
		// Sent even though the server names another CA as acceptable.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &bad, nil },
	}
	return tc
}
