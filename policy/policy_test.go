package policy

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func cert(cn string, dns []string, uris ...string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		c.URIs = append(c.URIs, p)
	}
	return c
}

func TestDecide(t *testing.T) {
	yes, no := true, false
	unix := func(uid, gid uint32) Peer { return Peer{Network: "unix", Cred: &Cred{PID: 1, UID: uid, GID: gid}} }
	tcp := func(a string) Peer { return Peer{Network: "tcp", Addr: netip.MustParseAddr(a).Unmap()} }
	withTLS := func(p Peer, c *x509.Certificate) Peer { p.TLS, p.Cert = true, c; return p }

	public := Access{}
	publicRules := Access{Rules: []Rule{{UIDs: []uint32{1000}}, {Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}}
	secret := Access{Secret: true, Rules: []Rule{
		{UIDs: []uint32{0, 1000}, GIDs: []uint32{100}},
		{CertCN: []string{"vm-*"}},
		{CertDNS: []string{"*.keys.example.org"}},
		{CertURI: []string{"spiffe://fleet/host/*"}, Sources: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}},
	}}
	secretNoRules := Access{Secret: true}
	secretUnixTLS := Access{Secret: true, RequireTLS: &yes, Rules: []Rule{{UIDs: []uint32{1000}}}}
	secretNoTLS := Access{Secret: true, RequireTLS: &no, Rules: []Rule{{Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}}}
	publicTLS := Access{RequireTLS: &yes}

	tests := []struct {
		name     string
		access   Access
		peer     Peer
		allowed  bool
		needTLS  bool
		reasonIn string
	}{
		{"public open to unix", public, unix(1234, 1234), true, false, "no rules"},
		{"public open to tcp", public, tcp("203.0.113.9"), true, false, "no rules"},
		{"public rule uid", publicRules, unix(1000, 5), true, false, "rule 1 (uid=1000)"},
		{"public rule uid refused", publicRules, unix(1001, 5), false, false, "uid 1001 not admitted"},
		{"public rule cidr", publicRules, tcp("10.1.2.3"), true, false, "rule 2 (source=10.0.0.0/8)"},
		{"public rule cidr mapped v6", publicRules, tcp("::ffff:10.1.2.3"), true, false, "rule 2"},
		{"public rule cidr refused", publicRules, tcp("11.0.0.1"), false, false, "source 11.0.0.1 not admitted"},
		{"public tcp peer is not a unix peer", publicRules, tcp("11.0.0.1"), false, false, "not a unix peer"},
		{"secret uid and gid", secret, unix(1000, 100), true, false, "rule 1"},
		{"secret root gid 100", secret, unix(0, 100), true, false, "rule 1"},
		{"secret uid right gid wrong", secret, unix(1000, 101), false, false, "gid 101 not admitted"},
		{"secret nobody", secret, unix(65534, 65534), false, false, "uid 65534 not admitted"},
		{"secret tcp without tls", secret, tcp("127.0.0.1"), false, true, "requires TLS"},
		{"secret unix no creds", secret, Peer{Network: "unix"}, false, false, "not a unix peer with credentials"},
		{"secret tls no cert", secret, withTLS(tcp("127.0.0.1"), nil), false, false, "no verified client certificate"},
		{"secret tls cn glob", secret, withTLS(tcp("127.0.0.1"), cert("vm-7", nil)), true, false, "rule 2 (cert-cn=vm-*)"},
		{"secret tls cn glob does not cross slash", secret, withTLS(tcp("127.0.0.1"), cert("vm-7/x", nil)), false, false, "cert cn \"vm-7/x\" not admitted"},
		{"secret tls cn other", secret, withTLS(tcp("127.0.0.1"), cert("intruder", nil)), false, false, "no rule admits"},
		{"secret tls dns san", secret, withTLS(tcp("127.0.0.1"), cert("x", []string{"other.org", "a.keys.example.org"})), true, false, "rule 3"},
		{"secret tls dns san other", secret, withTLS(tcp("127.0.0.1"), cert("x", []string{"keys.example.org"})), false, false, "no cert dns name admitted"},
		{"secret tls uri and source", secret, withTLS(tcp("192.168.1.5"), cert("x", nil, "spiffe://fleet/host/h1")), true, false, "rule 4"},
		{"secret tls uri wrong source", secret, withTLS(tcp("192.168.2.5"), cert("x", nil, "spiffe://fleet/host/h1")), false, false, "source 192.168.2.5 not admitted"},
		{"secret tls uri other", secret, withTLS(tcp("192.168.1.5"), cert("x", nil, "spiffe://fleet/vm/h1")), false, false, "no cert uri admitted"},
		{"secret unix over tls with cert", secret, withTLS(unix(5, 5), cert("vm-1", nil)), true, false, "rule 2"},
		{"secret no rules", secretNoRules, unix(0, 0), false, false, "secret export with no rules"},
		{"secret require tls on unix", secretUnixTLS, unix(1000, 1000), false, true, "requires TLS"},
		{"secret require tls on unix with tls", secretUnixTLS, withTLS(unix(1000, 1000), nil), true, false, "rule 1"},
		{"secret tls not required", secretNoTLS, tcp("127.0.0.1"), true, false, "rule 1"},
		{"public require tls", publicTLS, tcp("127.0.0.1"), false, true, "requires TLS"},
		{"public require tls on unix", publicTLS, unix(1, 1), false, true, "requires TLS"},
		{"public require tls met", publicTLS, withTLS(unix(1, 1), nil), true, false, "no rules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.access.Decide(tt.peer)
			if d.Allowed != tt.allowed || d.NeedTLS != tt.needTLS || !strings.Contains(d.Reason, tt.reasonIn) {
				t.Errorf("Decide(%s) = %+v; want allowed=%v needTLS=%v reason containing %q", tt.peer, d, tt.allowed, tt.needTLS, tt.reasonIn)
			}
			if d.Allowed != (d.Rule >= 0) && len(tt.access.Rules) > 0 {
				t.Errorf("Decide(%s): allowed %v but rule %d", tt.peer, d.Allowed, d.Rule)
			}
		})
	}
}

// A peer refused only for lack of TLS is told so (NeedTLS) when every
// rule needs a certificate; a rule it could meet in clear makes the
// refusal a plain one.
func TestNeedTLSOnlyWhenCertRulesAlone(t *testing.T) {
	no := false
	a := Access{RequireTLS: &no, Rules: []Rule{{CertCN: []string{"vm-*"}}}}
	if d := a.Decide(Peer{Network: "unix", Cred: &Cred{UID: 1}}); d.Allowed || !d.NeedTLS {
		t.Errorf("cert-only rules, no TLS: %+v, want NeedTLS", d)
	}
	a.Rules = append(a.Rules, Rule{UIDs: []uint32{0}})
	if d := a.Decide(Peer{Network: "unix", Cred: &Cred{UID: 1}}); d.Allowed || d.NeedTLS {
		t.Errorf("a uid rule too: %+v, want a plain refusal", d)
	}
}

func TestRuleValidate(t *testing.T) {
	bad := map[string]Rule{
		"empty":          {},
		"unix and tcp":   {UIDs: []uint32{1}, Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		"bad glob":       {CertCN: []string{"vm-["}},
		"invalid prefix": {Sources: []netip.Prefix{{}}},
	}
	for name, r := range bad {
		if err := r.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, r)
		}
	}
	good := Rule{GIDs: []uint32{100}, CertDNS: []string{"*.example.org"}}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", good, err)
	}
}

func TestListedAndPeerString(t *testing.T) {
	p := Peer{Network: "tcp", Addr: netip.MustParseAddr("10.0.0.1"), TLS: true, Cert: cert("vm-1", []string{"vm-1.example.org"}, "spiffe://f/h")}
	if (&Access{Secret: true, Rules: []Rule{{CertCN: []string{"*"}}}}).Listed(p) {
		t.Error("a secret export is listed")
	}
	if !(&Access{}).Listed(p) {
		t.Error("a public export is not listed")
	}
	want := `tcp 10.0.0.1 tls cert cn="vm-1" dns="vm-1.example.org" uri="spiffe://f/h"`
	if got := p.String(); got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	u := Peer{Network: "unix", Cred: &Cred{PID: 7, UID: 1000, GID: 100}}
	if got := u.String(); got != "unix uid=1000 gid=100 pid=7" {
		t.Errorf("String() = %s", got)
	}
}
