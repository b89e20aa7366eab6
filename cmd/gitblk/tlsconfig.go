package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/nbd"
)

// TLS certificate files in a --tls-certificates directory: the names
// nbdkit and qemu-nbd use, so existing directories work unchanged.
const (
	caCertFile     = "ca-cert.pem"
	serverCertFile = "server-cert.pem"
	serverKeyFile  = "server-key.pem"
	caCRLFile      = "ca-crl.pem" // optional, as for nbdkit
)

// loadTLS reads a certificate directory into a server tls.Config: the
// server's certificate and key, the CA that client certificates are
// verified against, and the CA's revocation list if there is one. A client may come without a certificate (it can read
// what needs none); one from another CA fails the handshake. TLS 1.2 is
// the minimum: nbd-client speaks only 1.2 by default.
func loadTLS(dir string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile))
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA certificate: no PEM certificate in %s", filepath.Join(dir, caCertFile))
	}
	revoked, err := loadCRL(filepath.Join(dir, caCRLFile), caPEM)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}
	if revoked != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, chain := range cs.VerifiedChains {
				for _, c := range chain {
					if revoked[string(c.RawIssuer)+"\x00"+c.SerialNumber.String()] {
						return fmt.Errorf("client certificate %q (serial %s) is revoked by %s", c.Subject.CommonName, c.SerialNumber, caCRLFile)
					}
				}
			}
			return nil
		}
	}
	return cfg, nil
}

// loadCRL reads the certificate revocation lists in path, if it exists,
// each signed by a certificate of caPEM, and returns the revoked
// certificates by issuer and serial number; nil when there is no file.
// An existing file that does not parse or check out is an error: a
// revocation list that is silently ignored would admit revoked clients.
func loadCRL(path string, caPEM []byte) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("CRL: %w", err)
	}
	var cas []*x509.Certificate
	for rest := caPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			cas = append(cas, c)
		}
	}
	revoked := map[string]bool{}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "X509 CRL" {
			continue
		}
		n++
		rl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %s: %w", path, err)
		}
		signed := false
		for _, ca := range cas {
			if rl.CheckSignatureFrom(ca) == nil {
				signed = true
				break
			}
		}
		if !signed {
			return nil, fmt.Errorf("CRL %s: not signed by a certificate of %s", path, caCertFile)
		}
		for _, e := range rl.RevokedCertificateEntries {
			revoked[string(rl.RawIssuer)+"\x00"+e.SerialNumber.String()] = true
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("CRL %s: no PEM X509 CRL in it", path)
	}
	return revoked, nil
}

// nbdTLSMode maps a config TLS mode to the nbd package's.
func nbdTLSMode(m config.TLSMode) nbd.TLSMode {
	switch m {
	case config.TLSOn:
		return nbd.TLSOn
	case config.TLSRequire:
		return nbd.TLSRequire
	}
	return nbd.TLSOff
}

var errNoCertificates = errors.New("tls.certificates cannot be added or removed by a reload; restart the server")
