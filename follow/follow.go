// Package follow keeps a local bare mirror of a remote git repository, in
// a directory gitblk owns, for gitblk to serve.
//
// Fetches run the git command line (git fetch --prune --no-auto-gc
// --atomic) into the mirror, on an interval and on demand. They never
// share a go-git storer with readers: readers open the mirror's directory
// with storage of their own and see new objects once a fetch has written
// them and moved the refs. git writes a fetch's objects before it updates
// any ref, and --atomic updates all refs or none, so a failed or partial
// fetch leaves every ref, and so everything served, as it was.
//
// Commits in use are pinned with refs under refs/gitblk/pin/, which git
// gc counts as reachable: a force-push upstream followed by gc on the
// mirror cannot remove the objects of a commit a connection still reads.
//
// Authentication is git's own: ssh keys and known_hosts through
// GIT_SSH_COMMAND, https credentials through a credential helper that reads
// a file. No secret is put on a command line or in the log; a URL with a
// password in it is refused.
package follow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultEvery is the fetch interval when Config.Every is zero.
const DefaultEvery = time.Minute

// DefaultTimeout bounds one fetch when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Minute

// PinPrefix is where pins live in the mirror: PinPrefix + commit id.
const PinPrefix = "refs/gitblk/pin/"

// refspecs are what a fetch mirrors. Only branches and tags: a
// refs/*:refs/* mirror with --prune would delete the pins under refs/gitblk/.
var refspecs = []string{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}

// maxReason bounds the git output kept as a failed fetch's reason.
const maxReason = 512

// Config says what to follow and how.
type Config struct {
	// URL is the remote, anything git fetch accepts (https://, ssh://,
	// host:path, git://, file://, a path). It must not carry a password.
	URL string
	// Dir is the mirror: a bare repository gitblk owns. It is created
	// when missing; an existing one has its remote set to URL.
	Dir string
	// Every is the fetch interval (DefaultEvery when zero).
	Every time.Duration
	// Timeout bounds one fetch (DefaultTimeout when zero).
	Timeout time.Duration
	// SSHKey is a private key file for ssh remotes; KnownHosts the
	// known_hosts file that must list the server's host key. Either may
	// be empty (ssh's defaults then apply).
	SSHKey, KnownHosts string
	// Credentials is a file of git credential lines for https remotes,
	// as git credential helpers print them:
	//
	//	username=deploy
	//	password=...
	//
	// git reads it through a credential helper at each fetch, so a
	// changed file needs no restart. Empty: git's own configuration.
	Credentials string
	// Git is the git binary ("git" when empty).
	Git string
	// OnFetch, when set, is called after every fetch with its result
	// (for metrics, and for serve to learn that refs moved). It runs on
	// the fetching goroutine: keep it short.
	OnFetch func(Result)
}

// Result is what one fetch did.
type Result struct {
	Start    time.Time
	Duration time.Duration
	// Err is nil for a good fetch; otherwise the reason, with git's own
	// message. The mirror's refs are then as they were before.
	Err error
	// Changed says whether any branch or tag moved, appeared or went.
	Changed bool
	// Refs are the mirror's branches and tags after the fetch: ref name
	// to object id.
	Refs map[string]string
}

// Status is a mirror's state, for metrics and `gitblk status`.
type Status struct {
	URL          string
	Dir          string
	Last         Result    // the latest fetch; zero before the first
	LastGood     time.Time // when the latest good fetch started; zero if none
	OK, Failed   uint64    // fetches so far, by result
	Updates      uint64    // good fetches that changed refs
	Pinned       []string  // commits pinned now, sorted
	Maintenances uint64    // maintenance runs that succeeded
}

// Mirror is a bare mirror of one remote. Its methods are safe for
// concurrent use.
type Mirror struct {
	cfg     Config
	log     *slog.Logger
	trigger chan struct{}

	fetchMu sync.Mutex // one fetch or maintenance at a time

	pinMu sync.Mutex
	pins  map[string]int // commit -> holders

	mu     sync.Mutex // guards status
	status Status
}

// New prepares the mirror in cfg.Dir (creating a bare repository when
// needed) and removes pins left by an earlier process. It does not fetch:
// Run does, at once and then every cfg.Every.
func New(cfg Config, log *slog.Logger) (*Mirror, error) {
	if cfg.URL == "" {
		return nil, errors.New("follow: no remote URL")
	}
	if HasPassword(cfg.URL) {
		return nil, errors.New("follow: the remote URL carries a password: put it in a credentials file instead")
	}
	if cfg.Dir == "" {
		return nil, errors.New("follow: no mirror directory")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("follow: mirror directory: %w", err)
	}
	cfg.Dir = dir
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Git == "" {
		cfg.Git = "git"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mirror{cfg: cfg, log: log, trigger: make(chan struct{}, 1), pins: map[string]int{}}
	m.status.URL, m.status.Dir = cfg.URL, cfg.Dir
	if err := m.setup(); err != nil {
		return nil, err
	}
	return m, nil
}

// HasPassword reports whether a remote URL names a password in its user
// info. New refuses such a URL, and so does config's check of a config
// file: a password belongs in a credentials file.
func HasPassword(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}

// setup makes cfg.Dir a bare repository whose origin is cfg.URL.
func (m *Mirror) setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A missing or empty directory becomes a new mirror; anything else
	// must already be a bare repository.
	if ents, err := os.ReadDir(m.cfg.Dir); errors.Is(err, os.ErrNotExist) || err == nil && len(ents) == 0 {
		if err := os.MkdirAll(m.cfg.Dir, 0o755); err != nil {
			return fmt.Errorf("follow: mirror directory: %w", err)
		}
		if _, err := m.git(ctx, "", "init", "--bare", "--quiet", m.cfg.Dir); err != nil {
			return fmt.Errorf("follow: create mirror: %w", err)
		}
	}
	if out, err := m.git(ctx, m.cfg.Dir, "rev-parse", "--is-bare-repository"); err != nil || strings.TrimSpace(out) != "true" {
		return fmt.Errorf("follow: %s is not a bare git repository (%v)", m.cfg.Dir, err)
	}
	for _, kv := range [][2]string{
		{"remote.origin.url", m.cfg.URL},
		// Maintenance is ours to run (Maintain), never detached.
		{"gc.autoDetach", "false"},
		// No reflogs: they would keep dropped commits alive behind our back
		// and grow without bound.
		{"core.logAllRefUpdates", "false"},
	} {
		if _, err := m.git(ctx, m.cfg.Dir, "config", kv[0], kv[1]); err != nil {
			return fmt.Errorf("follow: configure mirror: %w", err)
		}
	}
	// Nobody holds a pin a previous process left.
	out, err := m.git(ctx, m.cfg.Dir, "for-each-ref", "--format=%(refname)", PinPrefix)
	if err != nil {
		return fmt.Errorf("follow: list old pins: %w", err)
	}
	var del strings.Builder
	for _, ref := range strings.Fields(out) {
		fmt.Fprintf(&del, "delete %s\n", ref)
	}
	if del.Len() > 0 {
		if _, err := m.gitInput(ctx, m.cfg.Dir, del.String(), "update-ref", "--stdin"); err != nil {
			return fmt.Errorf("follow: remove old pins: %w", err)
		}
	}
	return nil
}

// GitDir is the mirror's directory, the repository to serve.
func (m *Mirror) GitDir() string { return m.cfg.Dir }

// URL is the remote followed.
func (m *Mirror) URL() string { return m.cfg.URL }

// Every is the fetch interval in use.
func (m *Mirror) Every() time.Duration { return m.cfg.Every }

// Trigger asks Run to fetch now. It never blocks; triggers while a fetch
// runs fold into one more fetch after it.
func (m *Mirror) Trigger() {
	select {
	case m.trigger <- struct{}{}:
	default:
	}
}

// Run fetches cfg.Every after each fetch ends and whenever Trigger is
// called, until ctx ends; it returns ctx's error. Its first fetch is at
// once, unless a Fetch (serve's first, before it says it is ready) ended
// less than an interval ago. A failed fetch is logged and counted, and the
// next one comes at the interval. After a fetch that changed refs it runs
// Maintain.
func (m *Mirror) Run(ctx context.Context) error {
	m.mu.Lock()
	last := m.status.Last
	m.mu.Unlock()
	first := time.Duration(0)
	if !last.Start.IsZero() {
		first = max(0, m.cfg.Every-time.Since(last.Start.Add(last.Duration)))
	}
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-m.trigger:
		}
		r := m.Fetch(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.Err == nil && r.Changed {
			if err := m.Maintain(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("follow: maintenance failed", "dir", m.cfg.Dir, "err", err)
			}
		}
		t.Stop()
		select { // drop a tick that fired during the fetch
		case <-t.C:
		default:
		}
		t.Reset(m.cfg.Every)
	}
}

// Fetch fetches from the remote once, now, and returns what it did (also
// recorded in Status and passed to cfg.OnFetch, unless ctx ended it).
// Concurrent calls run one after the other.
func (m *Mirror) Fetch(ctx context.Context) Result {
	m.fetchMu.Lock()
	defer m.fetchMu.Unlock()
	r := Result{Start: time.Now()}
	before, err := m.refs(ctx)
	if err == nil {
		r.Err = m.fetch(ctx)
	} else {
		r.Err = err
	}
	after, err := m.refs(ctx)
	if err != nil && r.Err == nil {
		r.Err = err
	}
	r.Duration = time.Since(r.Start)
	r.Refs = after
	if r.Err == nil {
		r.Changed = !sameRefs(before, after)
	}
	if r.Err != nil && ctx.Err() != nil {
		// Stopped by the caller (serve shutting down): not the remote's
		// failure, so neither counted nor reported to OnFetch.
		m.log.Info("follow: fetch interrupted", "remote", m.cfg.URL, "duration", r.Duration.Round(time.Millisecond))
		return r
	}

	m.mu.Lock()
	m.status.Last = r
	if r.Err == nil {
		m.status.OK++
		m.status.LastGood = r.Start
		if r.Changed {
			m.status.Updates++
		}
	} else {
		m.status.Failed++
	}
	m.mu.Unlock()

	switch {
	case r.Err != nil:
		m.log.Warn("follow: fetch failed", "remote", m.cfg.URL, "dir", m.cfg.Dir, "duration", r.Duration.Round(time.Millisecond), "err", r.Err)
	case r.Changed:
		m.log.Info("follow: refs changed", "remote", m.cfg.URL, "dir", m.cfg.Dir, "duration", r.Duration.Round(time.Millisecond), "changes", diffRefs(before, after))
	default:
		m.log.Debug("follow: up to date", "remote", m.cfg.URL, "duration", r.Duration.Round(time.Millisecond))
	}
	if m.cfg.OnFetch != nil {
		m.cfg.OnFetch(r)
	}
	return r
}

// fetch runs git fetch into the mirror, bounded by cfg.Timeout.
func (m *Mirror) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	args := []string{"fetch", "--prune", "--no-auto-gc", "--atomic", "--no-tags",
		"--no-write-fetch-head", "--quiet", "origin"}
	args = append(args, refspecs...)
	if _, err := m.git(ctx, m.cfg.Dir, args...); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("follow: fetch %s: timed out after %v: %w", m.cfg.URL, m.cfg.Timeout, err)
		}
		return fmt.Errorf("follow: fetch %s: %w", m.cfg.URL, err)
	}
	return nil
}

// refs lists the mirror's branches and tags (ref -> object id).
func (m *Mirror) refs(ctx context.Context) (map[string]string, error) {
	out, err := m.git(ctx, m.cfg.Dir, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", "refs/tags/")
	if err != nil {
		return nil, fmt.Errorf("follow: list refs: %w", err)
	}
	refs := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if id, name, ok := strings.Cut(line, " "); ok {
			refs[name] = id
		}
	}
	return refs, nil
}

func sameRefs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// diffRefs says what moved, for the log: "refs/heads/main 1a2b3c4..5d6e7f8".
func diffRefs(before, after map[string]string) string {
	var out []string
	short := func(id string) string {
		if len(id) > 12 {
			return id[:12]
		}
		return id
	}
	for k, v := range after {
		switch old, ok := before[k]; {
		case !ok:
			out = append(out, k+" new "+short(v))
		case old != v:
			out = append(out, k+" "+short(old)+".."+short(v))
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			out = append(out, k+" deleted")
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// Pin holds a ref on commit (a full object id) so that gc keeps its
// objects whatever happens upstream, until every holder has called its
// release. The first holder creates PinPrefix+commit; the last release
// deletes it. release is safe to call more than once.
func (m *Mirror) Pin(commit string) (release func(), err error) {
	if !isObjectID(commit) {
		return nil, fmt.Errorf("follow: pin: %q is not a full object id", commit)
	}
	m.pinMu.Lock()
	defer m.pinMu.Unlock()
	if m.pins[commit] == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := m.git(ctx, m.cfg.Dir, "update-ref", PinPrefix+commit, commit); err != nil {
			return nil, fmt.Errorf("follow: pin %s: %w", commit, err)
		}
	}
	m.pins[commit]++
	var once sync.Once
	return func() { once.Do(func() { m.unpin(commit) }) }, nil
}

func (m *Mirror) unpin(commit string) {
	m.pinMu.Lock()
	defer m.pinMu.Unlock()
	m.pins[commit]--
	if m.pins[commit] > 0 {
		return
	}
	delete(m.pins, commit)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := m.git(ctx, m.cfg.Dir, "update-ref", "-d", PinPrefix+commit, commit); err != nil {
		// A pin left behind only keeps objects longer; New removes it.
		m.log.Warn("follow: unpin failed", "commit", commit, "err", err)
	}
}

func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Maintain runs git gc --auto on the mirror: it repacks and prunes only
// when git's thresholds say so (gc.auto, gc.autoPackLimit). It is safe
// while commits are in use: every pinned commit has a ref, and objects
// that just became unreachable are kept for gc.pruneExpire (two weeks by
// default), which covers a commit resolved but not pinned yet. Readers see
// the new packs once git has renamed them into place. It waits for a
// running fetch, and Fetch waits for it.
func (m *Mirror) Maintain(ctx context.Context) error {
	m.fetchMu.Lock()
	defer m.fetchMu.Unlock()
	if _, err := m.git(ctx, m.cfg.Dir, "gc", "--auto", "--quiet"); err != nil {
		return fmt.Errorf("follow: maintenance: %w", err)
	}
	m.mu.Lock()
	m.status.Maintenances++
	m.mu.Unlock()
	return nil
}

// Status returns the mirror's state now.
func (m *Mirror) Status() Status {
	m.mu.Lock()
	s := m.status
	m.mu.Unlock()
	m.pinMu.Lock()
	for c := range m.pins {
		s.Pinned = append(s.Pinned, c)
	}
	m.pinMu.Unlock()
	sort.Strings(s.Pinned)
	return s
}

// git runs git with args in dir ("" for none) and returns its standard
// output; a failure carries the tail of git's standard error.
func (m *Mirror) git(ctx context.Context, dir string, args ...string) (string, error) {
	return m.gitInput(ctx, dir, "", args...)
}

func (m *Mirror) gitInput(ctx context.Context, dir, stdin string, args ...string) (string, error) {
	full := m.authArgs()
	if dir != "" {
		full = append(full, "--git-dir="+dir)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, m.cfg.Git, full...)
	cmd.Env = m.env()
	cmd.Dir = os.TempDir() // never a work tree of the caller's
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// git runs helpers (ssh, git-remote-https, index-pack): a timeout
	// kills them all, not git alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if reason := tail(stderr.String()); reason != "" {
			return stdout.String(), fmt.Errorf("git %s: %s (%w)", args[0], reason, err)
		}
		return stdout.String(), fmt.Errorf("git %s: %w", args[0], err)
	}
	return stdout.String(), nil
}

// tail keeps the last lines of git's messages, at most maxReason bytes, on
// one line.
func tail(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	out := strings.Join(lines, "; ")
	if len(out) > maxReason {
		out = "..." + out[len(out)-maxReason:]
	}
	return out
}

// credentialHelper prints the credentials file to git (the "get" action
// of gitcredentials(7)); "store" and "erase" do nothing, so git never
// rewrites the file. The file's path comes through the environment, never
// the command line.
const credentialHelper = `!f() { test "$1" = get && cat "$GITBLK_CREDENTIALS_FILE"; }; f`

// authArgs are the -c options that set up authentication.
func (m *Mirror) authArgs() []string {
	if m.cfg.Credentials == "" {
		return nil
	}
	// An empty helper first clears the helpers git's configuration names.
	return []string{"-c", "credential.helper=", "-c", "credential.helper=" + credentialHelper}
}

// env is git's environment: the process's, less what would redirect git
// or make it prompt, plus the authentication settings.
func (m *Mirror) env() []string {
	drop := map[string]bool{
		"GIT_DIR": true, "GIT_WORK_TREE": true, "GIT_INDEX_FILE": true, "GIT_OBJECT_DIRECTORY": true,
		"GIT_ALTERNATE_OBJECT_DIRECTORIES": true, "GIT_COMMON_DIR": true, "GIT_NAMESPACE": true,
		"GIT_ASKPASS": true, "SSH_ASKPASS": true, "GIT_TERMINAL_PROMPT": true,
		"GIT_CREDENTIALS_FILE": true, "GITBLK_CREDENTIALS_FILE": true,
	}
	ssh := m.sshCommand()
	if ssh != "" {
		drop["GIT_SSH_COMMAND"], drop["GIT_SSH"], drop["GIT_SSH_VARIANT"] = true, true, true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	env = append(env, "GIT_TERMINAL_PROMPT=0")
	if ssh != "" {
		env = append(env, "GIT_SSH_COMMAND="+ssh)
	}
	if m.cfg.Credentials != "" {
		env = append(env, "GITBLK_CREDENTIALS_FILE="+m.cfg.Credentials)
	}
	return env
}

// sshCommand is GIT_SSH_COMMAND for the configured key and known_hosts
// ("" when neither is set). ssh never prompts (BatchMode), and with a
// known_hosts file an unknown or changed host key fails the fetch.
func (m *Mirror) sshCommand() string {
	if m.cfg.SSHKey == "" && m.cfg.KnownHosts == "" {
		return ""
	}
	parts := []string{"ssh", "-o", "BatchMode=yes"}
	if m.cfg.SSHKey != "" {
		parts = append(parts, "-i", shellQuote(m.cfg.SSHKey), "-o", "IdentitiesOnly=yes")
	}
	if m.cfg.KnownHosts != "" {
		parts = append(parts, "-o", "UserKnownHostsFile="+shellQuote(m.cfg.KnownHosts), "-o", "StrictHostKeyChecking=yes")
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for sh, which runs GIT_SSH_COMMAND.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
