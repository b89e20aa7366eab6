// Package config reads gitblk's configuration: exports by name (a
// repository, a ref or ref patterns, image options, access rules, whether
// the export is secret and how to decrypt it), TLS settings and listeners.
//
// The file is TOML. Validation is strict: an unknown key, a value of the
// wrong type or out of range, a duplicate name or listener, a rule that
// cannot match is an *Error naming the file, the line and the key. Parse
// touches no file but the one it reads (relative paths in it are taken
// from the file's directory); what the config names (repositories,
// identities, certificates) is opened by the caller, which reports failures
// with Export.Errorf or Config.Errorf so they name the line too.
//
// An export may follow a remote instead of naming a local repository
// (follow = URL, with follow-every, follow-dir, follow-ssh-key,
// follow-known-hosts, follow-credentials): the server keeps a mirror of it.
// Exports that follow one URL share the mirror and must agree on those
// keys. metrics-listen names where /metrics and /status are served;
// handshake-timeout bounds how long a handshake waits on its client.
//
// The command line's one-repository form (gitblk serve REPO REF) builds the
// same Config; Equal compares two configs ignoring where they were read from.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/gitblk/gitblk/follow"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/policy"
)

// Defaults.
const (
	// DefaultListen is loopback only: nothing is exposed unless asked.
	DefaultListen = "127.0.0.1:10809"
	// DefaultMaxSecretFile bounds one decrypted file: keys, certificates
	// and tokens are a few KiB.
	DefaultMaxSecretFile = 1 << 20
	// DefaultMaxSecretMemory bounds decrypted bytes held at once, across
	// every secret image in use.
	DefaultMaxSecretMemory = 16 << 20
	// maxNameLen bounds an export name (the NBD limit is 4096 bytes).
	maxNameLen = 255
	// maxFileSize bounds the config file itself.
	maxFileSize = 1 << 20
	// MinFollowEvery is the shortest fetch interval allowed: a fleet of
	// hosts fetching more often than this costs the git server more than
	// it saves anyone.
	MinFollowEvery = time.Second
)

// TLSMode says how a listener treats STARTTLS.
type TLSMode string

// TLS modes, as nbdkit and qemu-nbd name them. TLSDefault means: require
// on TCP and on for unix sockets when certificates are given, else off.
const (
	TLSDefault TLSMode = ""
	TLSOff     TLSMode = "off"
	TLSOn      TLSMode = "on"
	TLSRequire TLSMode = "require"
)

// ParseTLSMode accepts off, on or require.
func ParseTLSMode(s string) (TLSMode, error) {
	switch m := TLSMode(s); m {
	case TLSOff, TLSOn, TLSRequire:
		return m, nil
	}
	return "", fmt.Errorf("unknown TLS mode %q (want off, on or require)", s)
}

// Config is a validated configuration.
type Config struct {
	File string // where it was read from; "" for the command line

	CacheSize       int64  // bytes of inflated git data per repository; 0: gitfs's default
	CacheDir        string // "": the default cache directory
	MaxSecretMemory int64  // decrypted bytes held at once, all secret images together
	// MetricsListen is where /metrics and /status are served: HOST:PORT,
	// :PORT or PORT (loopback unless a host is named), or unix:PATH; ""
	// for nowhere.
	MetricsListen string
	// HandshakeTimeout bounds how long a handshake waits on the client
	// (its silence, not the server's work); 0: nbd's default, 10 s.
	HandshakeTimeout time.Duration

	TLS     TLS
	Listen  []Listener
	Exports []Export // sorted by name

	pos positions
}

// TLS is where the server's certificates are and the default mode.
type TLS struct {
	// Certificates is a directory holding ca-cert.pem, server-cert.pem
	// and server-key.pem, the names nbdkit and qemu use; "" for no TLS.
	Certificates string
	Mode         TLSMode // for listeners that do not set their own
}

// Listener is an address to serve on: HOST:PORT, or unix:PATH.
type Listener struct {
	Address string
	TLS     TLSMode // TLSDefault: TLS.Mode, else the default for the network
}

// Unix reports whether the listener is a unix socket.
func (l Listener) Unix() bool { return strings.HasPrefix(l.Address, "unix:") }

// Mode is the listener's effective TLS mode under c.
func (c *Config) Mode(l Listener) TLSMode {
	switch {
	case l.TLS != TLSDefault:
		return l.TLS
	case c.TLS.Mode != TLSDefault:
		return c.TLS.Mode
	case c.TLS.Certificates == "":
		return TLSOff
	case l.Unix():
		return TLSOn
	}
	return TLSRequire
}

// Export is one export: what its name (or names) serve and to whom.
type Export struct {
	Name string
	// Repository is the repository served. With Follow it is the mirror's
	// directory, "" until the server picks its default place.
	Repository string
	// Follow, when set, makes Repository a mirror the server keeps of a
	// remote. Exports with the same URL share one mirror.
	Follow *Follow
	// Ref is the revision the name serves; "" when only Refs are served.
	Ref string
	// Refs are path.Match patterns on full ref names: the export also
	// serves every matching ref, as NAME/REF (or REF when Name is "").
	Refs []string
	// FormatSuffix lets a ref name (NAME/REF) end in ":tar" or ":fat" to
	// pick that format.
	FormatSuffix bool
	Image        Image

	Secret bool
	// Decrypt is an identity file (age X25519, or an OpenSSH ed25519 key):
	// every NAME.age is served decrypted as NAME. "" for none.
	Decrypt string
	// MaxSecretFile bounds one decrypted file (Decrypt only).
	MaxSecretFile int64
	// Access is who may read the export.
	Access policy.Access

	key string // "export.NAME", for error positions
	cfg *Config
}

// Follow is a remote an export's repository mirrors: the server fetches
// it on an interval and serves what the mirror's refs name.
type Follow struct {
	URL string // anything git fetch takes; no password in it
	// Dir is the mirror, a bare repository the server owns; "" for a
	// directory under the cache directory named after URL.
	Dir string
	// Every is the fetch interval; 0 for the default (one minute).
	Every time.Duration
	// SSHKey and KnownHosts are files for ssh remotes; Credentials a file
	// of git credential lines (username=, password=) for https ones.
	SSHKey, KnownHosts, Credentials string
}

// Error is a configuration error: where it is, and what is wrong.
type Error struct {
	File string // "" for the command line
	Line int    // 0 when unknown
	Key  string // dotted key path, "" for the whole file
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errorf makes an *Error for key (a dotted path from the top of the file).
func (c *Config) Errorf(key, format string, args ...any) error {
	line := 0
	if c.pos != nil {
		line = c.pos.line(key)
	}
	return &Error{File: c.File, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Errorf makes an *Error for one of the export's keys ("repository",
// "decrypt", ...).
func (e *Export) Errorf(key, format string, args ...any) error {
	k := e.key
	if key != "" {
		k += "." + key
	}
	if e.cfg == nil {
		return &Error{Key: k, Msg: fmt.Sprintf(format, args...)}
	}
	return e.cfg.Errorf(k, format, args...)
}

// Export returns the export named name, or nil.
func (c *Config) Export(name string) *Export {
	i := sort.Search(len(c.Exports), func(i int) bool { return c.Exports[i].Name >= name })
	if i < len(c.Exports) && c.Exports[i].Name == name {
		return &c.Exports[i]
	}
	return nil
}

// Equal reports whether c and d configure the same thing, wherever each
// was read from.
func (c *Config) Equal(d *Config) bool {
	strip := func(c *Config) Config {
		x := *c
		x.File, x.pos = "", nil
		x.Exports = make([]Export, len(c.Exports))
		for i, e := range c.Exports {
			e.cfg, e.key = nil, ""
			x.Exports[i] = e
		}
		return x
	}
	return reflect.DeepEqual(strip(c), strip(d))
}

// The file's shape, as decoded. Sizes are a number of bytes or a string
// with a K, M, G suffix.
type fileConfig struct {
	CacheSize       any          `toml:"cache-size"`
	CacheDir        string       `toml:"cache-dir"`
	MaxSecretMemory any          `toml:"max-secret-memory"`
	MetricsListen   string       `toml:"metrics-listen"`
	HandshakeTO     string       `toml:"handshake-timeout"`
	TLS             fileTLS      `toml:"tls"`
	Listen          []fileListen `toml:"listen"`
	Export          map[string]fileExport
}

type fileTLS struct {
	Certificates string `toml:"certificates"`
	Mode         string `toml:"mode"`
}

type fileListen struct {
	Address string `toml:"address"`
	TLS     string `toml:"tls"`
}

type fileExport struct {
	Repository   string     `toml:"repository"`
	Follow       string     `toml:"follow"`
	FollowDir    string     `toml:"follow-dir"`
	FollowEvery  string     `toml:"follow-every"`
	FollowSSHKey string     `toml:"follow-ssh-key"`
	FollowKnown  string     `toml:"follow-known-hosts"`
	FollowCreds  string     `toml:"follow-credentials"`
	Ref          string     `toml:"ref"`
	Refs         []string   `toml:"refs"`
	FormatSuffix bool       `toml:"format-suffix"`
	Format       string     `toml:"format"`
	Symlinks     string     `toml:"symlinks"`
	FATType      int        `toml:"fat-type"`
	SectorSize   int        `toml:"sector-size"`
	Secret       bool       `toml:"secret"`
	Decrypt      string     `toml:"decrypt"`
	MaxFile      any        `toml:"max-secret-file"`
	RequireTLS   *bool      `toml:"require-tls"`
	Allow        []fileRule `toml:"allow"`
}

type fileRule struct {
	UID     []int64  `toml:"uid"`
	GID     []int64  `toml:"gid"`
	Source  []string `toml:"source"`
	CertCN  []string `toml:"cert-cn"`
	CertDNS []string `toml:"cert-dns"`
	CertURI []string `toml:"cert-uri"`
}

// Load reads and validates the config file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPath(err))}
	}
	defer f.Close()
	doc, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPath(err))}
	}
	if len(doc) > maxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes", maxFileSize)}
	}
	return Parse(doc, path)
}

// unwrapPath drops the *PathError's repetition of the path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse validates doc, the contents of file (used in errors only).
func Parse(doc []byte, file string) (*Config, error) {
	c := &Config{File: file, pos: scanPositions(doc)}
	var fc fileConfig
	d := toml.NewDecoder(bytes.NewReader(doc))
	d.DisallowUnknownFields()
	if err := d.Decode(&fc); err != nil {
		return nil, c.decodeError(err)
	}
	if err := c.fill(&fc); err != nil {
		return nil, err
	}
	c.resolvePaths()
	return c, nil
}

// resolvePaths makes the paths a file names relative to the file's
// directory, as a reader of the file expects (not to the server's working
// directory, which a service manager chooses).
func (c *Config) resolvePaths() {
	if c.File == "" {
		return
	}
	base, err := filepath.Abs(filepath.Dir(c.File))
	if err != nil {
		return
	}
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.CacheDir)
	abs(&c.TLS.Certificates)
	for i := range c.Exports {
		x := &c.Exports[i]
		abs(&x.Repository)
		abs(&x.Decrypt)
		if f := x.Follow; f != nil {
			abs(&f.Dir)
			abs(&f.SSHKey)
			abs(&f.KnownHosts)
			abs(&f.Credentials)
			x.Repository = f.Dir
		}
	}
}

// decodeError turns the TOML library's errors into one *Error with a line.
func (c *Config) decodeError(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := &strict.Errors[0]
		line, _ := e.Position()
		return &Error{File: c.File, Line: line, Key: c.pos.fullKey(keyPath(e.Key()), line), Msg: "unknown key"}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if strings.Contains(msg, "already exists") {
			msg = "defined twice (a duplicate export name?): " + msg
		}
		return &Error{File: c.File, Line: line, Key: keyPath(de.Key()), Msg: msg}
	}
	return &Error{File: c.File, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
}

func (c *Config) fill(fc *fileConfig) error {
	var err error
	if c.CacheSize, err = c.size("cache-size", fc.CacheSize, 0); err != nil {
		return err
	}
	c.CacheDir = fc.CacheDir
	c.MetricsListen = fc.MetricsListen
	if fc.HandshakeTO != "" {
		d, err := time.ParseDuration(fc.HandshakeTO)
		if err != nil {
			return c.Errorf("handshake-timeout", "want a duration such as \"10s\" or \"500ms\", got %q", fc.HandshakeTO)
		}
		if d <= 0 {
			return c.Errorf("handshake-timeout", "want a positive duration, got %q", fc.HandshakeTO)
		}
		c.HandshakeTimeout = d
	}
	if c.MaxSecretMemory, err = c.size("max-secret-memory", fc.MaxSecretMemory, DefaultMaxSecretMemory); err != nil {
		return err
	}
	c.TLS.Certificates = fc.TLS.Certificates
	if fc.TLS.Mode != "" {
		if c.TLS.Mode, err = ParseTLSMode(fc.TLS.Mode); err != nil {
			return c.Errorf("tls.mode", "%v", err)
		}
	}
	for i, l := range fc.Listen {
		key := indexed("listen", i)
		x := Listener{Address: l.Address}
		if l.TLS != "" {
			if x.TLS, err = ParseTLSMode(l.TLS); err != nil {
				return c.Errorf(key+".tls", "%v", err)
			}
		}
		c.Listen = append(c.Listen, x)
	}
	names := make([]string, 0, len(fc.Export))
	for name := range fc.Export {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fe := fc.Export[name]
		key := "export." + quoteKey(name)
		x, err := c.export(name, key, &fe)
		if err != nil {
			return err
		}
		c.Exports = append(c.Exports, x)
	}
	return c.Validate()
}

// size reads a byte count written as a number or a string such as "16M".
func (c *Config) size(key string, v any, def int64) (int64, error) {
	switch v := v.(type) {
	case nil:
		return def, nil
	case int64:
		if v < 0 {
			return 0, c.Errorf(key, "negative size %d", v)
		}
		return v, nil
	case string:
		n, err := ParseBytes(v)
		if err != nil {
			return 0, c.Errorf(key, "%v", err)
		}
		return n, nil
	}
	return 0, c.Errorf(key, "want a byte count such as 1048576 or \"1M\", got %T", v)
}

func (c *Config) export(name, key string, fe *fileExport) (Export, error) {
	x := Export{Name: name, Repository: fe.Repository, Ref: fe.Ref, Refs: fe.Refs, FormatSuffix: fe.FormatSuffix,
		Secret: fe.Secret, Decrypt: fe.Decrypt, key: key, cfg: c}
	opts, err := ParseImage(fe.Format, fe.Symlinks, fe.FATType, fe.SectorSize)
	if err != nil {
		var oe *optionError
		if errors.As(err, &oe) {
			return x, c.Errorf(key+"."+oe.key, "%s", oe.msg)
		}
		return x, c.Errorf(key, "%v", err)
	}
	x.Image = opts
	if x.Follow, err = c.follow(key, fe); err != nil {
		return x, err
	}
	if x.Follow != nil {
		x.Repository = x.Follow.Dir
	}
	if x.MaxSecretFile, err = c.size(key+".max-secret-file", fe.MaxFile, 0); err != nil {
		return x, err
	}
	if fe.MaxFile != nil && fe.Decrypt == "" {
		return x, c.Errorf(key+".max-secret-file", "only applies with decrypt")
	}
	if x.Decrypt != "" && x.MaxSecretFile == 0 {
		x.MaxSecretFile = DefaultMaxSecretFile
	}
	x.Access.Secret = fe.Secret
	x.Access.RequireTLS = fe.RequireTLS
	for i, r := range fe.Allow {
		rk := indexed(key+".allow", i)
		rule, err := c.rule(rk, &r)
		if err != nil {
			return x, err
		}
		x.Access.Rules = append(x.Access.Rules, rule)
	}
	return x, nil
}

// follow reads an export's follow keys: nil without follow.
func (c *Config) follow(key string, fe *fileExport) (*Follow, error) {
	if fe.Follow == "" {
		for _, kv := range [][2]string{{"follow-dir", fe.FollowDir}, {"follow-every", fe.FollowEvery},
			{"follow-ssh-key", fe.FollowSSHKey}, {"follow-known-hosts", fe.FollowKnown}, {"follow-credentials", fe.FollowCreds}} {
			if kv[1] != "" {
				return nil, c.Errorf(key+"."+kv[0], "only applies with follow")
			}
		}
		return nil, nil
	}
	if fe.Repository != "" {
		return nil, c.Errorf(key+".repository", "an export that follows a remote serves its mirror: give follow-dir for where the mirror lives, not repository")
	}
	f := &Follow{URL: fe.Follow, Dir: fe.FollowDir, SSHKey: fe.FollowSSHKey, KnownHosts: fe.FollowKnown, Credentials: fe.FollowCreds}
	if fe.FollowEvery != "" {
		d, err := time.ParseDuration(fe.FollowEvery)
		if err != nil {
			return nil, c.Errorf(key+".follow-every", "want a duration such as \"1m\" or \"30s\", got %q", fe.FollowEvery)
		}
		f.Every = d
	}
	return f, nil
}

func (c *Config) rule(key string, r *fileRule) (policy.Rule, error) {
	var rule policy.Rule
	for _, u := range r.UID {
		if u < 0 || u > 1<<32-1 {
			return rule, c.Errorf(key+".uid", "uid %d out of range", u)
		}
		rule.UIDs = append(rule.UIDs, uint32(u))
	}
	for _, g := range r.GID {
		if g < 0 || g > 1<<32-1 {
			return rule, c.Errorf(key+".gid", "gid %d out of range", g)
		}
		rule.GIDs = append(rule.GIDs, uint32(g))
	}
	for _, s := range r.Source {
		p, err := ParsePrefix(s)
		if err != nil {
			return rule, c.Errorf(key+".source", "%v", err)
		}
		rule.Sources = append(rule.Sources, p)
	}
	rule.CertCN, rule.CertDNS, rule.CertURI = r.CertCN, r.CertDNS, r.CertURI
	if err := rule.Validate(); err != nil {
		return rule, c.Errorf(key, "%v", err)
	}
	return rule, nil
}

// ParsePrefix reads a CIDR prefix, or one address (a prefix of its full
// length). IPv4-mapped IPv6 prefixes are unmapped, as peer addresses are.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address or CIDR %q", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q", s)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("CIDR %q has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// optionError names the image option at fault.
type optionError struct{ key, msg string }

func (e *optionError) Error() string { return e.key + ": " + e.msg }

// Image is an export's image options as given: the format, and options
// that apply to some formats only. A name with a format suffix picks
// another format with the same options.
type Image struct {
	Format     imager.Format
	Symlinks   imager.SymlinkMode
	FATType    int // 0, 16 or 32
	SectorSize int // 512 or 4096
}

// ParseImage checks image options as the command line's flags give them
// ("" format: tar; 0 sector size: 512).
func ParseImage(format, symlinks string, fatType, sectorSize int) (Image, error) {
	var im Image
	var err error
	if format == "" {
		format = string(imager.FormatTar)
	}
	if im.Format, err = imager.ParseFormat(format); err != nil {
		return im, &optionError{"format", fmt.Sprintf("unknown format %q (want tar or fat)", format)}
	}
	if symlinks != "" {
		if im.Symlinks, err = imager.ParseSymlinkMode(symlinks); err != nil {
			return im, &optionError{"symlinks", fmt.Sprintf("unknown symlink mode %q (want keep, follow or skip)", symlinks)}
		}
	}
	switch fatType {
	case 0, 16, 32:
		im.FATType = fatType
	default:
		return im, &optionError{"fat-type", fmt.Sprintf("want 16 or 32, got %d", fatType)}
	}
	switch sectorSize {
	case 0:
		im.SectorSize = 512
	case 512, 4096:
		im.SectorSize = sectorSize
	default:
		return im, &optionError{"sector-size", fmt.Sprintf("want 512 or 4096, got %d", sectorSize)}
	}
	return im, nil
}

// Options returns the imager options for format ("" for the export's
// own): options that do not apply to it are cleared, so equal images
// have equal options (the command line's --format flags do the same).
func (im Image) Options(format imager.Format) imager.Options {
	if format == "" {
		format = im.Format
	}
	o := imager.Options{Format: format, Symlinks: im.Symlinks, FATType: im.FATType, SectorSize: im.SectorSize}
	if o.Format == imager.FormatFAT && o.Symlinks == imager.SymlinksKeep {
		o.Symlinks = imager.SymlinksDefault // FAT cannot keep links: follow
	}
	if o.Format == imager.FormatTar {
		o.FATType, o.SectorSize = 0, 0
	}
	return o
}

// Validate checks what no single key can: names, defaults, and how
// exports, listeners and TLS fit together. Parse calls it; the command
// line calls it on the config it builds.
func (c *Config) Validate() error {
	if c.CacheSize < 0 {
		return c.Errorf("cache-size", "negative size")
	}
	if c.MaxSecretMemory <= 0 {
		c.MaxSecretMemory = DefaultMaxSecretMemory
	}
	if len(c.Listen) == 0 {
		c.Listen = []Listener{{Address: DefaultListen}}
	}
	seen := map[string]bool{}
	for i, l := range c.Listen {
		key := indexed("listen", i)
		if err := checkAddress(l.Address); err != nil {
			return c.Errorf(key+".address", "%v", err)
		}
		if seen[l.Address] {
			return c.Errorf(key+".address", "duplicate listener %q", l.Address)
		}
		seen[l.Address] = true
		if m := c.Mode(l); m != TLSOff && c.TLS.Certificates == "" {
			return c.Errorf(key, "TLS mode %s needs tls.certificates", m)
		}
	}
	if c.TLS.Mode != TLSDefault && c.TLS.Mode != TLSOff && c.TLS.Certificates == "" {
		return c.Errorf("tls.mode", "mode %s needs tls.certificates", c.TLS.Mode)
	}
	if c.HandshakeTimeout < 0 {
		return c.Errorf("handshake-timeout", "want a positive duration, got %v", c.HandshakeTimeout)
	}
	if c.MetricsListen != "" {
		if err := checkMetricsAddress(c.MetricsListen); err != nil {
			return c.Errorf("metrics-listen", "%v", err)
		}
		if seen[c.MetricsListen] {
			return c.Errorf("metrics-listen", "%q is an NBD listener too", c.MetricsListen)
		}
	}
	if len(c.Exports) == 0 {
		return c.Errorf("", "no exports: add an [export.NAME] table")
	}
	sort.SliceStable(c.Exports, func(i, j int) bool { return c.Exports[i].Name < c.Exports[j].Name })
	for i := range c.Exports {
		x := &c.Exports[i]
		if x.cfg == nil {
			x.cfg, x.key = c, "export."+quoteKey(x.Name)
		}
		if i > 0 && c.Exports[i-1].Name == x.Name {
			return x.Errorf("", "duplicate export name %q", x.Name)
		}
		if err := x.validate(); err != nil {
			return err
		}
	}
	return c.validateFollow()
}

// validateFollow checks that exports following one remote agree on how,
// since they share its mirror, and that two remotes do not share a mirror.
func (c *Config) validateFollow() error {
	byURL := map[string]*Export{}
	byDir := map[string]*Export{}
	for i := range c.Exports {
		x := &c.Exports[i]
		f := x.Follow
		if f == nil {
			continue
		}
		if first := byURL[f.URL]; first != nil {
			g := first.Follow
			for _, d := range []struct{ key, a, b string }{
				{"follow-dir", f.Dir, g.Dir},
				{"follow-every", f.Every.String(), g.Every.String()},
				{"follow-ssh-key", f.SSHKey, g.SSHKey},
				{"follow-known-hosts", f.KnownHosts, g.KnownHosts},
				{"follow-credentials", f.Credentials, g.Credentials},
			} {
				if d.a != d.b {
					return x.Errorf(d.key, "export %q follows the same remote with another %s (%q): exports of one remote share its mirror and must agree", first.Name, d.key, d.b)
				}
			}
			continue
		}
		byURL[f.URL] = x
		if f.Dir != "" {
			if other := byDir[f.Dir]; other != nil {
				return x.Errorf("follow-dir", "export %q keeps the mirror of another remote (%s) there", other.Name, other.Follow.URL)
			}
			byDir[f.Dir] = x
		}
	}
	return nil
}

func (x *Export) validate() error {
	if err := checkName(x.Name); err != nil {
		return x.Errorf("", "%v", err)
	}
	if x.Repository == "" && x.Follow == nil {
		return x.Errorf("", "missing key repository (or follow, for a remote)")
	}
	if f := x.Follow; f != nil {
		if f.URL == "" {
			return x.Errorf("follow", "empty remote URL")
		}
		if strings.ContainsAny(f.URL, "\x00\n") {
			return x.Errorf("follow", "control characters in the remote URL")
		}
		if follow.HasPassword(f.URL) {
			return x.Errorf("follow", "the URL carries a password: put it in a file named by follow-credentials")
		}
		if f.Every != 0 && f.Every < MinFollowEvery {
			return x.Errorf("follow-every", "%v is shorter than the %v minimum", f.Every, MinFollowEvery)
		}
	}
	if x.Ref == "" && len(x.Refs) == 0 {
		return x.Errorf("", "missing key ref (or refs, for ref patterns)")
	}
	if x.FormatSuffix && len(x.Refs) == 0 {
		return x.Errorf("format-suffix", "only applies with refs")
	}
	for _, p := range x.Refs {
		if !strings.HasPrefix(p, "refs/") {
			return x.Errorf("refs", "pattern %q: want a full ref pattern such as 'refs/tags/*'", p)
		}
		if _, err := path.Match(p, "refs/"); err != nil {
			return x.Errorf("refs", "pattern %q: %v", p, err)
		}
	}
	if x.Decrypt != "" && !x.Secret {
		return x.Errorf("decrypt", "a decrypting export must be secret: add secret = true")
	}
	if x.Decrypt == "" && x.MaxSecretFile != 0 {
		return x.Errorf("max-secret-file", "only applies with decrypt")
	}
	if x.MaxSecretFile < 0 {
		return x.Errorf("max-secret-file", "negative size")
	}
	if x.Secret && len(x.Access.Rules) == 0 {
		return x.Errorf("", "a secret export needs at least one allow rule (nobody could read it)")
	}
	if x.Access.Secret != x.Secret {
		x.Access.Secret = x.Secret
	}
	return nil
}

// checkName allows names that cannot be mistaken for what the server
// derives from them: no "/" (pattern exports serve NAME/REF), no ":"
// (a format suffix), nothing unprintable.
func checkName(name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("export name longer than %d bytes", maxNameLen)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '/' || r == ':' || r == '\\' {
			return fmt.Errorf("export name %q: no '/', ':', '\\' or control characters", name)
		}
	}
	return nil
}

// checkMetricsAddress accepts what the metrics listener takes: HOST:PORT,
// :PORT, PORT, unix:PATH.
func checkMetricsAddress(a string) error {
	if _, err := strconv.ParseUint(a, 10, 16); err == nil {
		return nil
	}
	if err := checkAddress(a); err != nil {
		return fmt.Errorf("%q: want HOST:PORT, :PORT, PORT or unix:PATH", a)
	}
	return nil
}

// checkAddress accepts HOST:PORT, unix:PATH and unix:@NAME.
func checkAddress(a string) error {
	if p, ok := strings.CutPrefix(a, "unix:"); ok {
		if p == "" || p == "@" {
			return fmt.Errorf("%q: want unix:PATH", a)
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		return fmt.Errorf("%q: want HOST:PORT or unix:PATH", a)
	}
	return nil
}

// ParseBytes reads a byte count with an optional K, M, G or T suffix
// (powers of 1024, "KiB" and "KB" alike).
func ParseBytes(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		case 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	var v int64
	if _, err := fmt.Sscanf(t, "%d", &v); err != nil || v < 0 || fmt.Sprint(v) != t {
		return 0, fmt.Errorf("bad size %q (want e.g. 512M)", s)
	}
	if v > (1<<62)/mult {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return v * mult, nil
}
