package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/policy"
)

// accessFlags are serve's flags for secrets, access rules and TLS. With
// REPO REF they describe the one-repository config; --config names a file
// instead, and then no other flag that the file can set may be given.
type accessFlags struct {
	config          string
	tlsMode         string
	tlsCerts        string
	secret          bool
	decrypt         string
	allow           stringList
	requireTLS      optionalBool
	maxSecretFile   string
	maxSecretMemory string
}

func (f *accessFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "serve the exports of this TOML config file instead of REPO REF")
	fs.StringVar(&f.tlsMode, "tls", "", "STARTTLS: off, on (allowed), require; default require on TCP and on for unix sockets when --tls-certificates is given, else off")
	fs.StringVar(&f.tlsCerts, "tls-certificates", "", "directory with ca-cert.pem, server-cert.pem, server-key.pem (as nbdkit and qemu-nbd); client certificates are verified against ca-cert.pem")
	fs.BoolVar(&f.secret, "secret", false, "the exports are secret: never listed, refused like unknown names, TLS required on TCP; needs --allow")
	fs.StringVar(&f.decrypt, "decrypt", "", "identity file (age, or an OpenSSH ed25519 key): serve every NAME.age decrypted as NAME; needs --secret")
	fs.Var(&f.allow, "allow", "access rule: comma-separated uid=N, gid=N, source=CIDR, cert-cn=GLOB, cert-dns=GLOB, cert-uri=GLOB, all of which must hold; repeatable, any rule admits")
	fs.Var(&f.requireTLS, "require-tls", "serve the exports over TLS only (default: secret exports on TCP)")
	fs.StringVar(&f.maxSecretFile, "max-secret-file", "", "cap on one decrypted file (default 1M)")
	fs.StringVar(&f.maxSecretMemory, "max-secret-memory", "", "cap on decrypted bytes held at once (default 16M)")
}

// optionalBool is a bool flag that knows whether it was given.
type optionalBool struct{ v *bool }

func (b *optionalBool) String() string {
	if b == nil || b.v == nil {
		return ""
	}
	return strconv.FormatBool(*b.v)
}

func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.v = &v
	return nil
}

func (b *optionalBool) IsBoolFlag() bool { return true }

// configOnlyFlags may be given with --config: the rest are in the file.
var configOnlyFlags = map[string]bool{"config": true, "log-json": true}

// checkConfigFlags refuses flags the config file would override.
func checkConfigFlags(fs *flag.FlagSet) error {
	var bad []string
	fs.Visit(func(fl *flag.Flag) {
		if !configOnlyFlags[fl.Name] {
			bad = append(bad, "--"+fl.Name)
		}
	})
	if len(bad) > 0 {
		return usagef("%s cannot be used with --config: set them in the file", strings.Join(bad, ", "))
	}
	return nil
}

// parseRule reads an --allow rule: "uid=1000,gid=100", "cert-cn=vm-*".
func parseRule(s string) (policy.Rule, error) {
	var r policy.Rule
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return r, fmt.Errorf("%q: want KEY=VALUE", part)
		}
		switch k {
		case "uid", "gid":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return r, fmt.Errorf("%s=%s: not a number", k, v)
			}
			if k == "uid" {
				r.UIDs = append(r.UIDs, uint32(n))
			} else {
				r.GIDs = append(r.GIDs, uint32(n))
			}
		case "source":
			p, err := config.ParsePrefix(v)
			if err != nil {
				return r, err
			}
			r.Sources = append(r.Sources, p)
		case "cert-cn":
			r.CertCN = append(r.CertCN, v)
		case "cert-dns":
			r.CertDNS = append(r.CertDNS, v)
		case "cert-uri":
			r.CertURI = append(r.CertURI, v)
		default:
			return r, fmt.Errorf("unknown condition %q (want uid, gid, source, cert-cn, cert-dns or cert-uri)", k)
		}
	}
	return r, r.Validate()
}

// shorthandConfig is the config `gitblk serve REPO REF` with flags means:
// exports "" (REF in --format), "tar" and "fat" (REF in that format), and,
// with --refs, every matching ref as REF and REF:FORMAT, all with the same
// access rules.
func shorthandConfig(cf *commonFlags, listens, refs stringList, af *accessFlags, repo, rev string) (*config.Config, error) {
	c := &config.Config{CacheDir: cf.cacheDir}
	var err error
	if cf.cacheSize != "" {
		if c.CacheSize, err = config.ParseBytes(cf.cacheSize); err != nil {
			return nil, usagef("--cache-size: %v", err)
		}
	}
	if af.maxSecretMemory != "" {
		if c.MaxSecretMemory, err = config.ParseBytes(af.maxSecretMemory); err != nil {
			return nil, usagef("--max-secret-memory: %v", err)
		}
	}
	c.TLS.Certificates = af.tlsCerts
	if af.tlsMode != "" {
		if c.TLS.Mode, err = config.ParseTLSMode(af.tlsMode); err != nil {
			return nil, usagef("--tls: %v", err)
		}
	}
	for _, l := range listens {
		c.Listen = append(c.Listen, config.Listener{Address: l})
	}
	if err := checkPatterns(refs); err != nil {
		return nil, err
	}
	im, err := config.ParseImage(cf.format, cf.symlinks, cf.fatType, cf.sectorSize)
	if err != nil {
		return nil, usagef("--%v", err)
	}
	var access policy.Access
	access.Secret, access.RequireTLS = af.secret, af.requireTLS.v
	for _, a := range af.allow {
		r, err := parseRule(a)
		if err != nil {
			return nil, usagef("--allow %q: %v", a, err)
		}
		access.Rules = append(access.Rules, r)
	}
	var maxFile int64
	if af.maxSecretFile != "" {
		if af.decrypt == "" {
			return nil, usagef("--max-secret-file needs --decrypt")
		}
		if maxFile, err = config.ParseBytes(af.maxSecretFile); err != nil {
			return nil, usagef("--max-secret-file: %v", err)
		}
	} else if af.decrypt != "" {
		maxFile = config.DefaultMaxSecretFile
	}
	export := func(name string, format imager.Format) config.Export {
		x := config.Export{Name: name, Repository: repo, Ref: rev, Image: im, Secret: af.secret,
			Decrypt: af.decrypt, MaxSecretFile: maxFile, Access: access}
		if format != "" {
			x.Image.Format = format
		}
		return x
	}
	def := export("", "")
	if len(refs) > 0 {
		def.Refs, def.FormatSuffix = refs, true
	}
	c.Exports = []config.Export{def, export("tar", imager.FormatTar), export("fat", imager.FormatFAT)}
	if err := c.Validate(); err != nil {
		return nil, flagError(err)
	}
	return c, nil
}

// flagError rewords a config error about the command line's own config
// in terms of flags.
func flagError(err error) error {
	var ce *config.Error
	if errors.As(err, &ce) {
		return usagef("%s", ce.Msg)
	}
	return err
}
