// Package policy decides which peer may read which export. It is data from
// the config (rules per export) applied to what the transport established
// about a peer: unix socket credentials (SO_PEERCRED, fixed at connect(2)),
// the TCP source address, and the identity in a TLS client certificate
// that crypto/tls has verified against the configured CA.
//
// A connection may use an export if one of the export's rules admits it;
// a rule admits a peer when every condition it states holds. An export
// with no rules is open to everyone unless it is secret; a secret export
// with no rules is open to no one. A secret export requires TLS on TCP
// unless its config says otherwise; an export may require TLS always.
package policy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Peer is who is on the other end of a connection.
type Peer struct {
	Network string     // "tcp" or "unix"
	Addr    netip.Addr // TCP source address, unmapped; invalid on unix sockets
	Cred    *Cred      // unix sockets: SO_PEERCRED; nil on TCP or when unavailable
	TLS     bool       // STARTTLS succeeded
	// Cert is the client's certificate, verified against the CA by the
	// TLS handshake; nil without TLS or when the client sent none.
	Cert *x509.Certificate
}

// Cred is a unix socket peer's credentials at connect(2).
type Cred struct {
	PID      int32
	UID, GID uint32
}

// String names the peer for logs: network, address or credentials, and
// the certificate identity.
func (p Peer) String() string {
	var b strings.Builder
	b.WriteString(p.Network)
	if p.Addr.IsValid() {
		b.WriteString(" ")
		b.WriteString(p.Addr.String())
	}
	if p.Cred != nil {
		fmt.Fprintf(&b, " uid=%d gid=%d pid=%d", p.Cred.UID, p.Cred.GID, p.Cred.PID)
	}
	switch {
	case p.Cert != nil:
		fmt.Fprintf(&b, " tls cert cn=%q", p.Cert.Subject.CommonName)
		for _, d := range p.Cert.DNSNames {
			fmt.Fprintf(&b, " dns=%q", d)
		}
		for _, u := range p.Cert.URIs {
			fmt.Fprintf(&b, " uri=%q", u.String())
		}
	case p.TLS:
		b.WriteString(" tls no-cert")
	}
	return b.String()
}

// Rule is one way to be admitted. Every non-empty condition must hold;
// within a condition, any listed value will do. Certificate conditions are
// path.Match globs ("*" does not cross "/"), met only by a verified
// client certificate.
type Rule struct {
	UIDs    []uint32       // unix peer uid
	GIDs    []uint32       // unix peer primary gid
	Sources []netip.Prefix // TCP source address
	CertCN  []string       // subject common name
	CertDNS []string       // DNS subject alternative names (any of them)
	CertURI []string       // URI subject alternative names (any of them)
}

// Validate refuses rules that admit everyone or no one by construction,
// and malformed globs.
func (r *Rule) Validate() error {
	if len(r.UIDs)+len(r.GIDs)+len(r.Sources)+len(r.CertCN)+len(r.CertDNS)+len(r.CertURI) == 0 {
		return errors.New("policy: an empty rule would admit everyone; drop it (an export with no rules is open) or give a condition")
	}
	if len(r.UIDs)+len(r.GIDs) > 0 && len(r.Sources) > 0 {
		return errors.New("policy: a rule cannot require both unix credentials (uid, gid) and a TCP source: no peer has both")
	}
	for _, globs := range [][]string{r.CertCN, r.CertDNS, r.CertURI} {
		for _, g := range globs {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("policy: bad pattern %q: %v", g, err)
			}
		}
	}
	for _, p := range r.Sources {
		if !p.IsValid() {
			return errors.New("policy: invalid source prefix")
		}
	}
	return nil
}

// needsCert reports whether the rule can only admit a TLS client with a
// certificate.
func (r *Rule) needsCert() bool { return len(r.CertCN)+len(r.CertDNS)+len(r.CertURI) > 0 }

// String writes the rule as the config does, for logs.
func (r *Rule) String() string {
	var parts []string
	add := func(k string, vs []string) {
		if len(vs) > 0 {
			parts = append(parts, k+"="+strings.Join(vs, "|"))
		}
	}
	ids := func(xs []uint32) []string {
		var s []string
		for _, x := range xs {
			s = append(s, strconv.FormatUint(uint64(x), 10))
		}
		return s
	}
	add("uid", ids(r.UIDs))
	add("gid", ids(r.GIDs))
	var src []string
	for _, p := range r.Sources {
		src = append(src, p.String())
	}
	add("source", src)
	add("cert-cn", r.CertCN)
	add("cert-dns", r.CertDNS)
	add("cert-uri", r.CertURI)
	return strings.Join(parts, ",")
}

// check says whether r admits p, and if not, which condition failed.
func (r *Rule) check(p Peer) (bool, string) {
	if len(r.UIDs) > 0 {
		if p.Cred == nil {
			return false, "uid: not a unix peer with credentials"
		}
		if !slices.Contains(r.UIDs, p.Cred.UID) {
			return false, fmt.Sprintf("uid %d not admitted", p.Cred.UID)
		}
	}
	if len(r.GIDs) > 0 {
		if p.Cred == nil {
			return false, "gid: not a unix peer with credentials"
		}
		if !slices.Contains(r.GIDs, p.Cred.GID) {
			return false, fmt.Sprintf("gid %d not admitted", p.Cred.GID)
		}
	}
	if len(r.Sources) > 0 {
		if p.Network != "tcp" || !p.Addr.IsValid() {
			return false, "source: not a TCP peer"
		}
		a := p.Addr.Unmap()
		if !slices.ContainsFunc(r.Sources, func(pf netip.Prefix) bool { return pf.Contains(a) }) {
			return false, fmt.Sprintf("source %s not admitted", a)
		}
	}
	if r.needsCert() {
		if !p.TLS || p.Cert == nil {
			return false, "no verified client certificate"
		}
		if len(r.CertCN) > 0 && !anyMatch(r.CertCN, p.Cert.Subject.CommonName) {
			return false, fmt.Sprintf("cert cn %q not admitted", p.Cert.Subject.CommonName)
		}
		if len(r.CertDNS) > 0 && !slices.ContainsFunc(p.Cert.DNSNames, func(d string) bool { return anyMatch(r.CertDNS, d) }) {
			return false, "no cert dns name admitted"
		}
		if len(r.CertURI) > 0 && !slices.ContainsFunc(p.Cert.URIs, func(u *url.URL) bool { return anyMatch(r.CertURI, u.String()) }) {
			return false, "no cert uri admitted"
		}
	}
	return true, ""
}

func anyMatch(globs []string, s string) bool {
	for _, g := range globs {
		if ok, err := path.Match(g, s); err == nil && ok {
			return true
		}
	}
	return false
}

// Access is who may read one export.
type Access struct {
	Secret bool
	// RequireTLS: nil means the default (secret exports require TLS on
	// TCP); true requires TLS on every network; false never.
	RequireTLS *bool
	Rules      []Rule
}

// Decision is the outcome of Decide.
type Decision struct {
	Allowed bool
	// NeedTLS is set when the peer was refused because it has not started
	// TLS: the same peer over TLS might be admitted.
	NeedTLS bool
	Rule    int    // index of the admitting rule; -1 when none applies
	Reason  string // why: the admitting rule, or every rule's failure
}

// tlsRequired reports whether a is only served over TLS to peers of network.
func (a *Access) tlsRequired(network string) bool {
	if a.RequireTLS != nil {
		return *a.RequireTLS
	}
	return a.Secret && network == "tcp"
}

// Decide says whether p may use the export.
func (a *Access) Decide(p Peer) Decision {
	if a.tlsRequired(p.Network) && !p.TLS {
		return Decision{NeedTLS: true, Rule: -1, Reason: "export requires TLS"}
	}
	if len(a.Rules) == 0 {
		if a.Secret {
			return Decision{Rule: -1, Reason: "secret export with no rules"}
		}
		return Decision{Allowed: true, Rule: -1, Reason: "public export with no rules"}
	}
	var why []string
	onlyTLS := !p.TLS
	for i := range a.Rules {
		r := &a.Rules[i]
		ok, reason := r.check(p)
		if ok {
			return Decision{Allowed: true, Rule: i, Reason: fmt.Sprintf("rule %d (%s)", i+1, r)}
		}
		if !r.needsCert() {
			onlyTLS = false
		}
		why = append(why, fmt.Sprintf("rule %d (%s): %s", i+1, r, reason))
	}
	return Decision{NeedTLS: onlyTLS, Rule: -1, Reason: "no rule admits: " + strings.Join(why, "; ")}
}

// Listed reports whether the export's name appears in NBD_OPT_LIST for p.
// Secret exports never do: a listing would tell who may not read them
// that they exist.
func (a *Access) Listed(p Peer) bool { return !a.Secret }
