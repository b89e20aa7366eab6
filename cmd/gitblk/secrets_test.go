package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/internal/testutil"
)

// sh runs a command and returns its standard output; it fails the test
// unless the command succeeds.
func sh(t *testing.T, dir string, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, err := shErr(dir, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func shErr(dir string, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.org", "GIT_AUTHOR_DATE=2020-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2020-01-02T03:04:05Z",
		"PATH=/usr/bin:"+os.Getenv("PATH"))
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, stderr.String())
	}
	return out, nil
}

// gitRepo commits files to a new repository in dir.
func gitRepo(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	sh(t, "", nil, "git", "init", "-q", "-b", "main", dir)
	for p, data := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, dir, nil, "git", "add", "-A")
	sh(t, dir, nil, "git", "commit", "-q", "-m", "files")
}

// clientDir makes a libnbd tls-certificates directory: the server's CA,
// and a client certificate from caDir (none when name is "").
func clientDir(t *testing.T, dir, serverCA, caDir, name string) string {
	os.MkdirAll(dir, 0o700)
	testutil.CopyFile(t, filepath.Join(serverCA, "ca-cert.pem"), filepath.Join(dir, "ca-cert.pem"))
	if name != "" {
		testutil.CopyFile(t, filepath.Join(caDir, name+"-cert.pem"), filepath.Join(dir, "client-cert.pem"))
		testutil.CopyFile(t, filepath.Join(caDir, name+"-key.pem"), filepath.Join(dir, "client-key.pem"))
	}
	return dir
}

// startServe runs `gitblk serve args...` in this process until the test
// ends, and waits for its "serving" log line.
func startServe(t *testing.T, args ...string) *testutil.LogBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testutil.LogBuffer{}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, append([]string{"serve"}, args...), io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "msg=serving") {
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return logs
}

// waitLog waits for a log line containing s.
func waitLog(t *testing.T, logs *testutil.LogBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q:\n%s", s, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tarFile extracts one file of a tar image with bsdtar's neighbour, tar.
func tarFile(t *testing.T, img []byte, name string) []byte {
	t.Helper()
	return sh(t, "", img, "tar", "-xOf", "-", name)
}

// secretsSetup is a site repository, a private keys repository with
// age-encrypted files, an age host identity, and certificates.
type secretsSetup struct {
	dir, site, keys, identity, ca, otherCA string
	plainKey, plainToken                   []byte
	ctKey                                  []byte
}

const plaintextMarker = "gitblk-cmd-test-plaintext-4b1d"

func setupSecrets(t *testing.T) *secretsSetup {
	for _, tool := range [][2]string{{"git", "git"}, {"age", "age"}, {"age-keygen", "age"}, {"openssl", "openssl"},
		{"nbdinfo", "libnbd-bin"}, {"nbdcopy", "libnbd-bin"}, {"tar", "tar"}} {
		testutil.NeedTool(t, tool[0], tool[1])
	}
	dir, err := os.MkdirTemp("", "gitblk-sec-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &secretsSetup{dir: dir, site: filepath.Join(dir, "site"), keys: filepath.Join(dir, "keys"),
		identity: filepath.Join(dir, "host.txt"), ca: filepath.Join(dir, "ca"), otherCA: filepath.Join(dir, "other-ca")}
	sh(t, dir, nil, "age-keygen", "-o", s.identity)
	recipient := strings.TrimSpace(string(sh(t, dir, nil, "age-keygen", "-y", s.identity)))
	s.plainKey = []byte("-----BEGIN PRIVATE KEY-----\n" + plaintextMarker + "\n-----END PRIVATE KEY-----\n")
	s.plainToken = []byte("token-" + plaintextMarker)
	s.ctKey = sh(t, "", s.plainKey, "age", "-e", "-r", recipient)
	gitRepo(t, s.site, map[string][]byte{"index.html": []byte("<h1>site</h1>\n")})
	gitRepo(t, s.keys, map[string][]byte{
		"tls/server.key.age": s.ctKey,
		"api-token.age":      sh(t, "", s.plainToken, "age", "-e", "-r", recipient),
		"README":             []byte("keys for vm-1\n"),
	})
	testutil.MakeCA(t, s.ca, "gitblk test CA")
	testutil.MakeCert(t, s.ca, "server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth")
	testutil.MakeCert(t, s.ca, "vm1", "vm-1", "subjectAltName=DNS:vm-1.example.org\nextendedKeyUsage=clientAuth")
	testutil.MakeCert(t, s.ca, "intruder", "intruder", "extendedKeyUsage=clientAuth")
	testutil.MakeCA(t, s.otherCA, "another CA")
	testutil.MakeCert(t, s.otherCA, "vm1", "vm-1", "extendedKeyUsage=clientAuth")
	srv := filepath.Join(dir, "server-tls")
	os.MkdirAll(srv, 0o700)
	for _, f := range []string{"ca-cert.pem", "server-cert.pem", "server-key.pem"} {
		testutil.CopyFile(t, filepath.Join(s.ca, f), filepath.Join(srv, f))
	}
	return s
}

func (s *secretsSetup) config(sock string, port int, extra string) string {
	return fmt.Sprintf(`cache-dir = %q
[tls]
certificates = %q

[[listen]]
address = "unix:%s"

[[listen]]
address = "127.0.0.1:%d"

[export.site]
repository = %q
ref = "main"

[export.keys]
repository = %q
ref = "main"
secret = true
decrypt = %q
allow = [{ cert-cn = ["vm-*"] }, { uid = [0] }]
require-tls = false

[export.keys-uid]
repository = %q
ref = "main"
secret = true
decrypt = %q
allow = [{ uid = [0] }]

[export.keys-gid]
repository = %q
ref = "main"
secret = true
decrypt = %q
allow = [{ gid = [4242] }]
%s`, filepath.Join(s.dir, "cache"), filepath.Join(s.dir, "server-tls"), sock, port, s.site, s.keys, s.identity, s.keys, s.identity,
		s.keys, s.identity, extra)
}

func TestServeSecretExports(t *testing.T) {
	s := setupSecrets(t)
	tmp := filepath.Join(s.dir, "tmp")
	os.MkdirAll(tmp, 0o700)
	t.Setenv("TMPDIR", tmp)
	sock := filepath.Join(s.dir, "s.sock")
	port := testutil.FreePort(t)
	cfgPath := filepath.Join(s.dir, "gitblk.toml")
	os.WriteFile(cfgPath, []byte(s.config(sock, port, "")), 0o600)
	logs := startServe(t, "--config", cfgPath)
	// Let another uid connect, so the policy is what refuses it.
	os.Chmod(s.dir, 0o711)
	os.Chmod(sock, 0o666)

	good := clientDir(t, filepath.Join(s.dir, "c-good"), s.ca, s.ca, "vm1")
	noCert := clientDir(t, filepath.Join(s.dir, "c-none"), s.ca, "", "")
	otherCA := clientDir(t, filepath.Join(s.dir, "c-other"), s.ca, s.otherCA, "vm1")
	intruder := clientDir(t, filepath.Join(s.dir, "c-intruder"), s.ca, s.ca, "intruder")
	unixURI := func(export, certs string) string {
		u := "nbds+unix:///" + export + "?socket=" + sock
		if certs != "" {
			u += "&tls-certificates=" + certs
		}
		return u
	}
	tcpURI := func(export, certs string) string {
		return fmt.Sprintf("nbds://localhost:%d/%s?tls-certificates=%s", port, export, certs)
	}

	// What build --config --export makes is what the server serves.
	var built bytes.Buffer
	if err := Run(context.Background(), []string{"build", "-q", "--config", cfgPath, "--export", "keys"}, &built, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{unixURI("keys", good), tcpURI("keys", good)} {
		img := sh(t, "", nil, "nbdcopy", uri, "-")
		if !bytes.Equal(img, built.Bytes()) {
			t.Errorf("%s: %d bytes differ from build --export keys (%d)", uri, len(img), built.Len())
		}
		if got, want := tarFile(t, img, "tls/server.key"), sh(t, "", s.ctKey, "age", "-d", "-i", s.identity); !bytes.Equal(got, want) {
			t.Errorf("%s: tls/server.key = %q, want age -d output %q", uri, got, want)
		}
		if got := tarFile(t, img, "api-token"); !bytes.Equal(got, s.plainToken) {
			t.Errorf("%s: api-token = %q", uri, got)
		}
		if _, err := shErr("", img, "tar", "-xOf", "-", "tls/server.key.age"); err == nil {
			t.Errorf("%s: the ciphertext is in the image too", uri)
		}
	}
	// qemu's client, with tls-creds-x509, reads the same bytes.
	if _, err := exec.LookPath("qemu-img"); err == nil {
		for i, server := range []string{"server.type=unix,server.path=" + sock,
			fmt.Sprintf("server.type=inet,server.host=127.0.0.1,server.port=%d", port)} {
			out := filepath.Join(s.dir, fmt.Sprintf("qemu-%d.img", i))
			sh(t, "", nil, "qemu-img", "convert", "--object", "tls-creds-x509,id=tls0,dir="+good+",endpoint=client",
				"--image-opts", "driver=nbd,"+server+",export=keys,tls-creds=tls0,tls-hostname=localhost", "-O", "raw", out)
			if img, _ := os.ReadFile(out); !bytes.Equal(img, built.Bytes()) {
				t.Errorf("qemu-img over %s: %d bytes differ from build --export keys", server, len(img))
			}
			os.Remove(out)
		}
	} else {
		t.Log("qemu-img not installed (Debian qemu-utils): its case is not run")
	}
	// The public export needs no certificate, over TLS or (on unix) not.
	if out := sh(t, "", nil, "nbdinfo", "--size", unixURI("site", noCert)); strings.TrimSpace(string(out)) == "" {
		t.Error("site over TLS without a client certificate: no size")
	}
	sh(t, "", nil, "nbdinfo", "--size", "nbd+unix:///site?socket="+sock)

	// Secret exports are never listed.
	list := string(sh(t, "", nil, "nbdinfo", "--list", unixURI("", good)))
	if !strings.Contains(list, `export="site"`) || strings.Contains(list, "keys") {
		t.Errorf("list:\n%s", list)
	}
	// nbd-client, which speaks only TLS 1.2, lists over TCP (TLS required
	// there) with its certificate: the same.
	if _, err := exec.LookPath("nbd-client"); err == nil {
		out := string(sh(t, "", nil, "nbd-client", "-l", "127.0.0.1", fmt.Sprint(port),
			"-certfile", filepath.Join(good, "client-cert.pem"), "-keyfile", filepath.Join(good, "client-key.pem"),
			"-cacertfile", filepath.Join(good, "ca-cert.pem"), "-tlshostname", "localhost"))
		if !strings.Contains(out, "site") || strings.Contains(out, "keys") {
			t.Errorf("nbd-client -l over TLS:\n%s", out)
		}
		t.Logf("nbd-client -l over TLS 1.2: %q", out)
	} else {
		t.Log("nbd-client not installed (Debian nbd-client): its case is not run")
	}

	// Refused clients read nothing, and a refused secret looks unknown.
	refusals := []struct{ what, uri, want string }{
		{"no client certificate (tcp)", tcpURI("keys", noCert), "No such file"},
		// gnutls sends no certificate the server's CertificateRequest does
		// not name the CA of, so this client reads as one without any.
		{"certificate of another CA (tcp)", tcpURI("keys", otherCA), "No such file"},
		{"identity no rule admits (tcp)", tcpURI("keys", intruder), "No such file"},
		{"a name that does not exist", tcpURI("nothere", good), "No such file"},
		{"plain tcp under require", fmt.Sprintf("nbd://127.0.0.1:%d/site", port), ""},
	}
	for _, r := range refusals {
		out, err := shErr("", nil, "nbdcopy", r.uri, "-")
		if err == nil || len(out) > 0 {
			t.Errorf("%s: read %d bytes, err %v", r.what, len(out), err)
		} else if !strings.Contains(err.Error(), r.want) {
			t.Errorf("%s: %v, want %q", r.what, err, r.want)
		}
	}
	if !strings.Contains(logs.String(), `reason="no rule admits: rule 1 (cert-cn=vm-*): cert cn \"intruder\" not admitted`) {
		t.Errorf("no refusal log line naming the rule:\n%s", logs.String())
	}

	// A unix client running as another uid is refused; root is admitted.
	if _, err := exec.LookPath("setpriv"); err == nil && os.Geteuid() == 0 {
		out, err := shErr("", nil, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"/usr/bin/nbdcopy", "nbd+unix:///keys-uid?socket="+sock, "-")
		if err == nil || len(out) > 0 || !strings.Contains(err.Error(), "No such file") {
			t.Errorf("uid 65534: read %d bytes, err %v", len(out), err)
		}
		waitLog(t, logs, "uid 65534 not admitted")
		// By group: gid 4242 is admitted, whatever the uid; another is not.
		for gid, ok := range map[string]bool{"4242": true, "65534": false} {
			out, err := shErr("", nil, "setpriv", "--reuid=65534", "--regid="+gid, "--clear-groups",
				"/usr/bin/nbdcopy", "nbd+unix:///keys-gid?socket="+sock, "-")
			if ok && (err != nil || !bytes.Equal(out, built.Bytes())) {
				t.Errorf("gid %s: %v, read %d bytes; want the export", gid, err, len(out))
			}
			if !ok && (err == nil || len(out) > 0 || !strings.Contains(err.Error(), "No such file")) {
				t.Errorf("gid %s: read %d bytes, err %v; want the unknown-export reply", gid, len(out), err)
			}
		}
		waitLog(t, logs, "gid 65534 not admitted")
		if img := sh(t, "", nil, "nbdcopy", "nbd+unix:///keys-uid?socket="+sock, "-"); !bytes.Equal(img, built.Bytes()) {
			t.Error("uid 0 over plain unix: other bytes")
		}
	} else {
		t.Log("not root or no setpriv: the other-uid case is not run")
	}

	// No file in the cache directory or TMPDIR holds plaintext.
	for _, d := range []string{filepath.Join(s.dir, "cache"), tmp} {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(plaintextMarker)) {
					t.Errorf("%s holds plaintext", p)
				}
			}
			return nil
		})
	}
	if n := countFiles(filepath.Join(s.dir, "cache")); n == 0 {
		t.Error("the cache directory is empty: the scan proves nothing")
	}

	// SIGHUP with a broken config: logged, the old config kept.
	os.WriteFile(cfgPath, []byte(s.config(sock, port, "colour = \"red\"\n")), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog(t, logs, "reload failed")
	if !strings.Contains(logs.String(), "export.keys-gid.colour: unknown key") {
		t.Errorf("the reload failure does not name the key:\n%s", logs.String())
	}
	if img := sh(t, "", nil, "nbdcopy", unixURI("keys", good), "-"); !bytes.Equal(img, built.Bytes()) {
		t.Error("after a broken reload: keys no longer served")
	}
	// SIGHUP with a good config: new connections see it.
	os.WriteFile(cfgPath, []byte(s.config(sock, port, "\n[export.site2]\nrepository = \""+s.site+"\"\nref = \"main\"\n")), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog(t, logs, "msg=reloaded")
	if list := string(sh(t, "", nil, "nbdinfo", "--list", unixURI("", good))); !strings.Contains(list, `export="site2"`) {
		t.Errorf("after reload, list:\n%s", list)
	}
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// A wrong identity or a damaged .age file makes the export unavailable,
// looking unknown to the client, with a log line naming the path; the
// server goes on serving the rest.
func TestServeSecretFailsClosed(t *testing.T) {
	s := setupSecrets(t)
	other := filepath.Join(s.dir, "other.txt")
	sh(t, s.dir, nil, "age-keygen", "-o", other)
	damaged := filepath.Join(s.dir, "damaged")
	bad := bytes.Clone(s.ctKey)
	bad[len(bad)-5] ^= 1
	gitRepo(t, damaged, map[string][]byte{"k.age": bad})
	sock := filepath.Join(s.dir, "f.sock")
	cfg := fmt.Sprintf(`[[listen]]
address = "unix:%s"
[export.site]
repository = %q
ref = "main"
[export.wrong-id]
repository = %q
ref = "main"
secret = true
decrypt = %q
allow = [{ uid = [%d] }]
[export.damaged]
repository = %q
ref = "main"
secret = true
decrypt = %q
allow = [{ uid = [%d] }]
`, sock, s.site, s.keys, other, os.Getuid(), damaged, s.identity, os.Getuid())
	cfgPath := filepath.Join(s.dir, "f.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	logs := startServe(t, "--config", cfgPath)
	for _, x := range []struct{ export, path string }{{"wrong-id", "api-token.age"}, {"damaged", "k.age"}} {
		out, err := shErr("", nil, "nbdcopy", "nbd+unix:///"+x.export+"?socket="+sock, "-")
		if err == nil || len(out) > 0 || !strings.Contains(err.Error(), "No such file") {
			t.Errorf("%s: read %d bytes, err %v; want the unknown-export reply", x.export, len(out), err)
		}
		waitLog(t, logs, x.path)
	}
	sh(t, "", nil, "nbdinfo", "--size", "nbd+unix:///site?socket="+sock)
	// build says why, and writes nothing.
	var out bytes.Buffer
	err := Run(context.Background(), []string{"build", "-q", "--config", cfgPath, "--export", "damaged"}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "k.age") || out.Len() > 0 {
		t.Errorf("build --export damaged: %v, %d bytes", err, out.Len())
	}
}

// A config that does not validate is one error naming file, line and key,
// exit status 2, and nothing is served.
func TestServeConfigErrors(t *testing.T) {
	testutil.NeedTool(t, "git", "git")
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	gitRepo(t, repo, map[string][]byte{"a": []byte("a")})
	id := filepath.Join(dir, "id")
	os.WriteFile(id, []byte("not a key\n"), 0o600)
	sock := filepath.Join(dir, "x.sock")
	head := fmt.Sprintf("[[listen]]\naddress = \"unix:%s\"\n", sock)
	exp := fmt.Sprintf("[export.a]\nrepository = %q\nref = \"main\"\n", repo)
	tests := []struct{ doc, want string }{
		{head + exp + "colour = 1\n", ":6: export.a.colour: unknown key"},
		{head + exp + exp, ":6: export.a: defined twice (a duplicate export name?)"},
		{head + "[export.a]\nrepository = \"" + filepath.Join(dir, "nope") + "\"\nref = \"main\"\n", ":4: export.a.repository:"},
		{head + exp + "ref = \"nope\"\n", ""},
		{head + exp + "secret = true\ndecrypt = \"" + id + "\"\nallow = [{uid=[0]}]\n", ":7: export.a.decrypt: secrets: identity"},
		{head + exp + "secret = true\ndecrypt = \"" + filepath.Join(dir, "missing") + "\"\nallow = [{uid=[0]}]\n", ":7: export.a.decrypt:"},
		{"[tls]\ncertificates = \"" + dir + "\"\n" + head + exp, ":2: tls.certificates:"},
		{head + exp[:len(exp)-len("ref = \"main\"\n")] + "ref = \"nope\"\n", ":5: export.a.ref: gitfs: unknown revision"},
	}
	for i, tt := range tests {
		p := filepath.Join(dir, fmt.Sprintf("c%d.toml", i))
		os.WriteFile(p, []byte(tt.doc), 0o600)
		var stderr bytes.Buffer
		err := Run(context.Background(), []string{"serve", "--config", p}, io.Discard, &stderr)
		if err == nil {
			t.Fatalf("config %d served", i)
		}
		if tt.want == "" {
			continue // a duplicate TOML key: checked below by its line
		}
		if code := exitCode(err, io.Discard); code != 2 || !strings.Contains(err.Error(), p+tt.want) {
			t.Errorf("config %d: exit %d, %v; want 2 and %q", i, code, err, p+tt.want)
		}
		if _, err := os.Stat(sock); err == nil {
			t.Errorf("config %d: a socket was created", i)
		}
	}
	// The shorthand's flags: an unreadable certificate directory or
	// identity is a usage error naming the flag.
	for _, args := range [][]string{{"--tls-certificates", dir}, {"--secret", "--allow", "uid=0", "--decrypt", id}} {
		err := Run(context.Background(), append(append([]string{"serve", "--listen", "unix:" + sock}, args...), repo, "main"), io.Discard, io.Discard)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), args[len(args)-2]) {
			t.Errorf("serve %q: %v, want a usage error naming %s", args, err, args[len(args)-2])
		}
	}
	// Flags the file sets cannot be given with --config.
	if err := Run(context.Background(), []string{"serve", "--config", "x.toml", "--format", "fat"}, io.Discard, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("--config with --format: %v", err)
	}
}

// serve REPO REF with flags means exactly the config it implies.
func TestShorthandIsConfig(t *testing.T) {
	cf := commonFlags{imageFlags: imageFlags{format: "fat", symlinks: "skip", fatType: 16, sectorSize: 4096},
		repoFlags: repoFlags{cacheSize: "32M", cacheDir: "/var/cache/x"}}
	af := accessFlags{tlsCerts: "/etc/gitblk/tls", secret: true, decrypt: "/etc/gitblk/id",
		allow:         stringList{"uid=0,gid=100", "cert-cn=vm-*,cert-dns=*.example.org", "source=10.0.0.0/8,cert-uri=spiffe://f/*"},
		maxSecretFile: "64K", maxSecretMemory: "8M"}
	got, err := shorthandConfig(&cf, stringList{"unix:/run/g.sock", "0.0.0.0:10809"}, stringList{"refs/tags/*"}, &af, "/srv/keys.git", "main")
	if err != nil {
		t.Fatal(err)
	}
	export := func(name, format, more string) string {
		return fmt.Sprintf(`[export.%s]
repository = "/srv/keys.git"
ref = "main"
format = %q
symlinks = "skip"
fat-type = 16
sector-size = 4096
secret = true
decrypt = "/etc/gitblk/id"
max-secret-file = "64K"
%sallow = [
  { uid = [0], gid = [100] },
  { cert-cn = ["vm-*"], cert-dns = ["*.example.org"] },
  { source = ["10.0.0.0/8"], cert-uri = ["spiffe://f/*"] },
]
`, name, format, more)
	}
	doc := `cache-size = "32M"
cache-dir = "/var/cache/x"
max-secret-memory = "8M"
[tls]
certificates = "/etc/gitblk/tls"
[[listen]]
address = "unix:/run/g.sock"
[[listen]]
address = "0.0.0.0:10809"
` + export(`""`, "fat", "refs = [\"refs/tags/*\"]\nformat-suffix = true\n") + export("tar", "tar", "") + export("fat", "fat", "")
	want, err := config.Parse([]byte(doc), "shorthand.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(want) {
		t.Errorf("shorthand config\n%+v\nis not the file's\n%+v", got, want)
	}
	// The names resolve as the shorthand always did.
	set := &exportSet{cfg: got, exports: map[string]*liveExport{}}
	for i := range got.Exports {
		le := &liveExport{x: &got.Exports[i]}
		set.exports[le.x.Name] = le
		if len(le.x.Refs) > 0 {
			set.patterns = append(set.patterns, le)
		}
	}
	x := exportNamer{defaultRev: "main", patterns: []string{"refs/tags/*"}}
	for _, name := range []string{"", "tar", "fat", "refs/tags/v1", "refs/tags/v1:tar", "refs/tags/v1:fat", ":fat", "main",
		"refs/heads/main", "refs/tags/v1~1", "refs/tags/v1:iso", "refs/tags/a/b"} {
		old, oldErr := x.parse(name)
		le, rev, format, err := set.lookup(name)
		if (oldErr == nil) != (err == nil) {
			t.Errorf("%q: shorthand %v, config %v", name, oldErr, err)
			continue
		}
		if err != nil {
			continue
		}
		oldOpts, _ := cf.options(old.format)
		if rev != old.rev || le.x.Image.Options(format) != oldOpts {
			t.Errorf("%q: config gives %s %+v, shorthand %s %+v", name, rev, le.x.Image.Options(format), old.rev, oldOpts)
		}
	}
	if got.Mode(got.Listen[0]) != config.TLSOn || got.Mode(got.Listen[1]) != config.TLSRequire {
		t.Errorf("default TLS modes with certificates: %s, %s", got.Mode(got.Listen[0]), got.Mode(got.Listen[1]))
	}
	// A secret without rules, or decrypt without secret, is a usage error.
	for _, bad := range []accessFlags{{secret: true}, {decrypt: "/x"}, {secret: true, allow: stringList{"uid=x"}}, {tlsMode: "on"}} {
		if _, err := shorthandConfig(&cf, nil, nil, &bad, "/r", "main"); !errors.Is(err, errUsage) {
			t.Errorf("%+v: %v, want a usage error", bad, err)
		}
	}
}

// SIGHUP reloads the certificates too, here for the REPO REF shorthand:
// new connections get the new server certificate and CA.
func TestServeReloadsCertificates(t *testing.T) {
	s := setupSecrets(t)
	srvDir := filepath.Join(s.dir, "server-tls")
	sock := filepath.Join(s.dir, "r.sock")
	logs := startServe(t, "--listen", "unix:"+sock, "--tls-certificates", srvDir, "--secret", "--decrypt", s.identity,
		"--allow", "cert-cn=vm-*", s.keys, "main")
	old := clientDir(t, filepath.Join(s.dir, "c-old"), s.ca, s.ca, "vm1")
	uri := func(certs string) string { return "nbds+unix:///?socket=" + sock + "&tls-certificates=" + certs }
	before := sh(t, "", nil, "nbdcopy", uri(old), "-")
	if got := tarFile(t, before, "tls/server.key"); !bytes.Equal(got, s.plainKey) {
		t.Fatalf("tls/server.key = %q", got)
	}
	// A new CA signs the new server certificate and the new client's.
	ca2 := filepath.Join(s.dir, "ca2")
	testutil.MakeCA(t, ca2, "second CA")
	testutil.MakeCert(t, ca2, "server", "localhost", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth")
	testutil.MakeCert(t, ca2, "vm2", "vm-2", "extendedKeyUsage=clientAuth")
	for _, f := range []string{"ca-cert.pem", "server-cert.pem", "server-key.pem"} {
		testutil.CopyFile(t, filepath.Join(ca2, f), filepath.Join(srvDir, f))
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog(t, logs, "msg=reloaded")
	if out, err := shErr("", nil, "nbdcopy", uri(old), "-"); err == nil || len(out) > 0 {
		t.Errorf("a client trusting only the old CA read %d bytes after the reload (err %v)", len(out), err)
	}
	fresh := clientDir(t, filepath.Join(s.dir, "c-new"), ca2, ca2, "vm2")
	if after := sh(t, "", nil, "nbdcopy", uri(fresh), "-"); !bytes.Equal(after, before) {
		t.Error("after the certificate reload: other bytes")
	}
	// Certificates that do not load: logged, the old ones kept.
	os.WriteFile(filepath.Join(srvDir, "server-key.pem"), []byte("broken"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog(t, logs, "reload failed")
	if after := sh(t, "", nil, "nbdcopy", uri(fresh), "-"); !bytes.Equal(after, before) {
		t.Error("after a failed certificate reload: other bytes")
	}
}

// mount --config --export shows what the export serves: its image, and
// its tree with the decrypted files under their plain names.
func TestMountExport(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: FUSE mounts cannot exist here (%v)", err)
	}
	testutil.NeedTool(t, "fusermount3", "fuse3")
	s := setupSecrets(t)
	cfgPath := filepath.Join(s.dir, "m.toml")
	os.WriteFile(cfgPath, []byte(s.config(filepath.Join(s.dir, "m.sock"), testutil.FreePort(t), "")), 0o600)
	var built bytes.Buffer
	if err := Run(context.Background(), []string{"build", "-q", "--config", cfgPath, "--export", "keys"}, &built, io.Discard); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.dir, "mnt")
	os.MkdirAll(dir, 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testutil.LogBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"mount", "--config", cfgPath, "--export", "keys", dir}, io.Discard, logs)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("mount: %v", err)
			}
		case <-time.After(20 * time.Second):
			exec.Command("fusermount3", "-u", "-z", dir).Run()
			t.Error("mount did not stop")
		}
	}()
	waitLog(t, logs, "msg=mounted")
	if got, err := os.ReadFile(filepath.Join(dir, "tree", "tls", "server.key")); err != nil || !bytes.Equal(got, s.plainKey) {
		t.Errorf("tree/tls/server.key = %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tree", "tls", "server.key.age")); !os.IsNotExist(err) {
		t.Errorf("tree/tls/server.key.age: %v, want it absent", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "image.tar")); err != nil || !bytes.Equal(got, built.Bytes()) {
		t.Errorf("image.tar: %d bytes, %v; want build --export keys (%d bytes)", len(got), err, built.Len())
	}
	if _, err := os.Stat(filepath.Join(dir, "image.fat")); !os.IsNotExist(err) {
		t.Errorf("image.fat of a tar export: %v", err)
	}
	// Usage: --config and --export go together, and take no REPO REF; a
	// decrypting export is not shown to other users.
	for _, args := range [][]string{{"build", "--config", cfgPath}, {"build", "--export", "keys", ".", "HEAD"},
		{"build", "--config", cfgPath, "--export", "keys", ".", "HEAD"}, {"build", "--config", cfgPath, "--export", "keys", "--format", "fat"},
		{"mount", "--config", cfgPath, "--export", "keys", ".", "HEAD", dir}, {"build", "--config", cfgPath, "--export", "nope"},
		{"mount", "--allow-other", "--config", cfgPath, "--export", "keys", filepath.Join(s.dir, "mnt2")}} {
		if err := Run(context.Background(), args, io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}

// build -o of a decrypting export writes a file only its owner can read,
// a new one or one that was readable by others.
func TestBuildSecretFileMode(t *testing.T) {
	s := setupSecrets(t)
	cfgPath := filepath.Join(s.dir, "b.toml")
	os.WriteFile(cfgPath, []byte(s.config(filepath.Join(s.dir, "b.sock"), testutil.FreePort(t), "")), 0o600)
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	existing := filepath.Join(s.dir, "existing.tar")
	os.WriteFile(existing, []byte("x"), 0o644)
	os.Chmod(existing, 0o644)
	for _, tt := range []struct {
		export, path string
		want         os.FileMode
	}{
		{"keys", filepath.Join(s.dir, "new.tar"), 0o600},
		{"keys", existing, 0o600},
		{"site", filepath.Join(s.dir, "site.tar"), 0o644},
	} {
		if err := Run(context.Background(), []string{"build", "-q", "-o", tt.path, "--config", cfgPath, "--export", tt.export}, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != tt.want {
			t.Errorf("build --export %s -o %s: mode %v, want %v", tt.export, filepath.Base(tt.path), st.Mode().Perm(), tt.want)
		}
	}
	if got := tarFile(t, mustRead(t, existing), "tls/server.key"); !bytes.Equal(got, s.plainKey) {
		t.Errorf("tls/server.key = %q", got)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
