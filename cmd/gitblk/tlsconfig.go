package main

import (
	"crypto/tls"
	"crypto/x509"
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
)

// loadTLS reads a certificate directory into a server tls.Config: the
// server's certificate and key, and the CA that client certificates are
// verified against. A client may come without a certificate (it can read
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
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}, nil
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
