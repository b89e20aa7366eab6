package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// secretMarker is in every plaintext: no file on disk may hold it.
const secretMarker = "integration-plaintext-9e4c1a"

// runOut runs a program and returns its standard output, failing the test
// with its standard error when it fails.
func runOut(t *testing.T, dir string, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, err := runErr(dir, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func runErr(dir string, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:"+os.Getenv("PATH"))
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// tlsDirs makes a CA, a server certificate directory (the nbdkit and qemu
// names) and a libnbd client directory with a certificate for cn.
func tlsDirs(t *testing.T, dir, cn string) (server, client, clientNoCert string) {
	t.Helper()
	ca := filepath.Join(dir, "ca")
	testutil.MakeCA(t, ca, "integration CA")
	cert := func(name, subject, ext string) { testutil.MakeCert(t, ca, name, subject, ext) }
	cert("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth")
	cert("client", cn, "extendedKeyUsage=clientAuth")
	server, client, clientNoCert = filepath.Join(dir, "server"), filepath.Join(dir, "client"), filepath.Join(dir, "nocert")
	cp := func(from, to string) { testutil.CopyFile(t, filepath.Join(ca, from), to) }
	for _, d := range []string{server, client, clientNoCert} {
		os.MkdirAll(d, 0o700)
		cp("ca-cert.pem", filepath.Join(d, "ca-cert.pem"))
	}
	cp("server-cert.pem", filepath.Join(server, "server-cert.pem"))
	cp("server-key.pem", filepath.Join(server, "server-key.pem"))
	cp("client-cert.pem", filepath.Join(client, "client-cert.pem"))
	cp("client-key.pem", filepath.Join(client, "client-key.pem"))
	return server, client, clientNoCert
}

// serveProcess is a `gitblk serve --config` process.
type serveProcess struct {
	cmd    *exec.Cmd
	log    *testutil.LogBuffer
	exited chan error
}

func startServeConfig(t *testing.T, cfgPath string, env []string, ready func() error) *serveProcess {
	t.Helper()
	p := &serveProcess{log: &testutil.LogBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(gitblkBin, "serve", "--config", cfgPath)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr, p.cmd.Stdout = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.exited:
			if err != nil {
				t.Errorf("serve exit after SIGTERM: %v\n%s", err, p.log.String())
			}
		case <-time.After(serveStopTimeout):
			p.cmd.Process.Kill()
			t.Errorf("serve did not stop\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(serveReadyTimeout)
	for ready() != nil {
		select {
		case err := <-p.exited:
			t.Fatalf("serve exited: %v\n%s", err, p.log.String())
		case <-time.After(servePollInterval):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready:\n%s", p.log.String())
		}
	}
	return p
}

func (p *serveProcess) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(serveReadyTimeout)
	for !strings.Contains(p.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q:\n%s", s, p.log.String())
		}
		time.Sleep(servePollInterval)
	}
}

// TestSecretExportOverTLS runs the binary with a config serving a public
// site and a secret volume from a second, private repository whose keys
// are age-encrypted: nbdcopy and qemu-img (tls-creds-x509) over
// nbds+unix:// and nbds:// read the decrypted files byte for byte, nbdinfo
// sees the size, a client without a certificate reads
// nothing, no file in the default cache directory or TMPDIR holds
// plaintext, and a SIGHUP with a broken config keeps the old one.
func TestSecretExportOverTLS(t *testing.T) {
	for _, tool := range []struct{ prog, pkg string }{{"age", "age"}, {"age-keygen", "age"}, {"openssl", "openssl"},
		{"nbdcopy", "libnbd-bin"}, {"nbdinfo", "libnbd-bin"}, {"nbdsh", "python3-libnbd"}} {
		testutil.NeedTool(t, tool.prog, tool.pkg)
	}
	dir, err := os.MkdirTemp("", "gitblk-secret-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	identity := filepath.Join(dir, "host.txt")
	runOut(t, dir, nil, "age-keygen", "-o", identity)
	recipient := strings.TrimSpace(string(runOut(t, dir, nil, "age-keygen", "-y", identity)))
	plainKey := "-----BEGIN PRIVATE KEY-----\n" + secretMarker + "\n-----END PRIVATE KEY-----\n"
	ct := runOut(t, "", []byte(plainKey), "age", "-e", "-r", recipient)
	site := newRepo(t, map[string]string{"index.html": "<h1>public</h1>\n"})
	keys := newRepo(t, map[string]string{"tls/server.key.age": string(ct), "README": "keys\n"})
	srvTLS, client, noCert := tlsDirs(t, dir, "unikernel-1")

	sock := filepath.Join(dir, "s.sock")
	port := testutil.FreePort(t)
	cfgText := func(extra string) string {
		return fmt.Sprintf(`[tls]
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
format = "fat"
secret = true
decrypt = %q
allow = [{ cert-cn = ["unikernel-*"] }]
%s`, srvTLS, sock, port, site, keys, identity, extra)
	}
	cfgPath := filepath.Join(dir, "gitblk.toml")
	os.WriteFile(cfgPath, []byte(cfgText("")), 0o600)

	// A config that does not validate: exit status 2, nothing served.
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte(cfgText("colour = \"red\"\n")), 0o600)
	out, err := exec.Command(gitblkBin, "serve", "--config", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), bad+":17: export.keys.colour: unknown key") {
		t.Errorf("broken config: %v\n%s", err, out)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("a broken config created the socket")
	}

	tmp, xdg := filepath.Join(dir, "tmp"), filepath.Join(dir, "xdg")
	os.MkdirAll(tmp, 0o700)
	env := []string{"TMPDIR=" + tmp, "XDG_CACHE_HOME=" + xdg}
	p := startServeConfig(t, cfgPath, env, func() error { return probeNBD(sock) })

	builtPath := filepath.Join(dir, "built.img")
	if b, err := exec.Command(gitblkBin, "build", "-q", "-o", builtPath, "--config", cfgPath, "--export", "keys").CombinedOutput(); err != nil {
		t.Fatalf("build --export keys: %v\n%s", err, b)
	}
	built, _ := os.ReadFile(builtPath)
	os.Remove(builtPath)
	unixURI := "nbds+unix:///keys?socket=" + sock + "&tls-certificates=" + client
	tcpURI := fmt.Sprintf("nbds://localhost:%d/keys?tls-certificates=%s", port, client)
	for _, uri := range []string{unixURI, tcpURI} {
		img := runOut(t, "", nil, "nbdcopy", uri, "-")
		if !bytes.Equal(img, built) {
			t.Errorf("%s: %d bytes, differ from build --export keys (%d)", uri, len(img), len(built))
		}
		// The FAT volume holds the decrypted key, as age -d gives it.
		if _, err := exec.LookPath("mcopy"); err == nil {
			f := filepath.Join(dir, "vol.img")
			os.WriteFile(f, img, 0o600)
			got := runOut(t, "", nil, "mcopy", "-n", "-i", f, "::/tls/server.key", "-")
			os.Remove(f)
			if want := runOut(t, "", ct, "age", "-d", "-i", identity); !bytes.Equal(got, want) {
				t.Errorf("%s: tls/server.key = %q, want %q", uri, got, want)
			}
		}
	}
	// nbdinfo sees the export's size over both; qemu's client, with
	// tls-creds-x509, reads the same bytes over both.
	for _, uri := range []string{unixURI, tcpURI} {
		if got := strings.TrimSpace(string(runOut(t, "", nil, "nbdinfo", "--size", uri))); got != fmt.Sprint(len(built)) {
			t.Errorf("nbdinfo --size %s = %s, want %d", uri, got, len(built))
		}
	}
	if _, err := exec.LookPath("qemu-img"); err == nil {
		for i, server := range []string{"server.type=unix,server.path=" + sock,
			fmt.Sprintf("server.type=inet,server.host=127.0.0.1,server.port=%d", port)} {
			out := filepath.Join(dir, fmt.Sprintf("qemu-%d.img", i))
			runOut(t, "", nil, "qemu-img", "convert", "--object", "tls-creds-x509,id=tls0,dir="+client+",endpoint=client",
				"--image-opts", "driver=nbd,"+server+",export=keys,tls-creds=tls0,tls-hostname=localhost", "-O", "raw", out)
			if img, _ := os.ReadFile(out); !bytes.Equal(img, built) {
				t.Errorf("qemu-img over %s: %d bytes differ from build --export keys", server, len(img))
			}
			os.Remove(out)
		}
	} else {
		t.Log("qemu-img not installed (Debian qemu-utils): its case is not run")
	}
	if out, err := runErr("", nil, "nbdcopy", fmt.Sprintf("nbds://localhost:%d/keys?tls-certificates=%s", port, noCert), "-"); err == nil || len(out) > 0 {
		t.Errorf("a client without a certificate read %d bytes (err %v)", len(out), err)
	}
	if list := string(runOut(t, "", nil, "nbdinfo", "--list", "nbds+unix:///?socket="+sock+"&tls-certificates="+client)); strings.Contains(list, "keys") {
		t.Errorf("the secret export is listed:\n%s", list)
	}
	// Nothing on disk holds plaintext: the default cache directory (which
	// the server did use) and TMPDIR.
	files := 0
	for _, d := range []string{xdg, tmp} {
		filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				files++
				if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(secretMarker)) {
					t.Errorf("%s holds plaintext", path)
				}
			}
			return nil
		})
	}
	if files == 0 {
		t.Error("no file in the cache directory: the scan proves nothing")
	}

	// While a connection holds the secret export, its plaintext is locked
	// in the server's memory (VmLck); when the connection closes, freed.
	hold := exec.Command("nbdsh", "-c", fmt.Sprintf(`import sys
h.set_uri_allow_local_file(True)
h.connect_uri(%q)
h.pread(512, 0)
print("held", flush=True)
sys.stdin.readline()
`, unixURI))
	hold.Env = append(os.Environ(), "PATH=/usr/bin:"+os.Getenv("PATH"))
	stdin, _ := hold.StdinPipe()
	stdout, _ := hold.StdoutPipe()
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	held := bufio.NewScanner(stdout)
	for held.Scan() && !strings.HasSuffix(held.Text(), "held") {
	}
	if !strings.HasSuffix(held.Text(), "held") {
		t.Fatalf("nbdsh did not hold the export: %v", held.Err())
	}
	if locked := vmLck(t, p.cmd.Process.Pid); locked == 0 {
		t.Log("VmLck 0 while the secret is held: RLIMIT_MEMLOCK did not allow locking here")
		p.waitLog(t, "could not be locked")
	} else if max := 16 << 10; locked > max { // kB: the default max-secret-memory
		t.Errorf("VmLck %d kB while the secret is held, over the 16 MiB cap", locked)
	}
	stdin.Close()
	hold.Wait()
	deadline := time.Now().Add(serveStopTimeout)
	for vmLck(t, p.cmd.Process.Pid) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("VmLck %d kB after the last connection closed", vmLck(t, p.cmd.Process.Pid))
		}
		time.Sleep(servePollInterval)
	}

	// SIGHUP with a broken config: logged, still serving the old one.
	os.WriteFile(cfgPath, []byte(cfgText("colour = \"red\"\n")), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "reload failed")
	if img := runOut(t, "", nil, "nbdcopy", unixURI, "-"); !bytes.Equal(img, built) {
		t.Error("after a broken reload: the secret export is not served as before")
	}
	// SIGHUP with a good config: new connections see it.
	os.WriteFile(cfgPath, []byte(cfgText("\n[export.more]\nrepository = \""+site+"\"\nref = \"main\"\n")), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "msg=reloaded")
	runOut(t, "", nil, "nbdinfo", "--size", "nbds+unix:///more?socket="+sock+"&tls-certificates="+noCert)
}

// TestGuestReadsSecretExportOverTLS boots a Linux guest under QEMU with the
// two volumes of a deployment as its virtio disks, both fetched over TLS on
// TCP (required there) with a client certificate: the public data export
// (tar, from the site repository) and the secret export (FAT, from a second
// repository of age-encrypted keys). Every file of the data disk equals
// git's; every file of the secret disk equals `age -d` of the stored file
// (or the stored file, when it is not encrypted), and no .age file is there.
func TestGuestReadsSecretExportOverTLS(t *testing.T) {
	qemu := testutil.NeedTool(t, "qemu-system-x86_64", "qemu-system-x86")
	for _, tool := range []struct{ prog, pkg string }{{"age", "age"}, {"age-keygen", "age"}, {"openssl", "openssl"}} {
		testutil.NeedTool(t, tool.prog, tool.pkg)
	}
	kernel, initrd := prepareGuest(t)
	dir, err := os.MkdirTemp("", "gitblk-guest-secret-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	identity := filepath.Join(dir, "host.txt")
	runOut(t, dir, nil, "age-keygen", "-o", identity)
	recipient := strings.TrimSpace(string(runOut(t, dir, nil, "age-keygen", "-y", identity)))
	plain := map[string]string{
		"tls/server.key": "-----BEGIN PRIVATE KEY-----\n" + secretMarker + "\n-----END PRIVATE KEY-----\n",
		"dns/update.key": "key \"update\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };\n",
		"api-token":      "token-" + secretMarker,
		"tls/server.pem": "a public certificate, stored in clear\n",
		"README":         "keys of unikernel-1\n",
	}
	stored := map[string]string{}
	want := map[string]string{}
	for p, content := range plain {
		if strings.HasSuffix(p, ".key") || p == "api-token" {
			ct := runOut(t, "", []byte(content), "age", "-e", "-r", recipient)
			stored[p+".age"] = string(ct)
			content = string(runOut(t, "", ct, "age", "-d", "-i", identity))
		} else {
			stored[p] = content
		}
		sum := sha256.Sum256([]byte(content))
		want[p] = hex.EncodeToString(sum[:])
	}
	keys := newRepo(t, stored)
	site := newRepo(t, guestFiles())
	wantSite := gitFileHashes(t, site, "main")
	srvTLS, client, _ := tlsDirs(t, dir, "unikernel-1")
	port := testutil.FreePort(t)
	cfgPath := filepath.Join(dir, "gitblk.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`[tls]
certificates = %q
[[listen]]
address = "127.0.0.1:%d"
[export.site]
repository = %q
ref = "main"
[export.keys]
repository = %q
ref = "main"
format = "fat"
secret = true
decrypt = %q
allow = [{ cert-cn = ["unikernel-*"] }]
`, srvTLS, port, site, keys, identity)), 0o600)
	startServeConfig(t, cfgPath, nil, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	})

	ctx, cancel := context.WithTimeout(t.Context(), guestBootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-m", guestMemory, "-nographic", "-no-reboot", "-nic", "none",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet loglevel=1 panic=-1 gitblk.mode=tar gitblk.mode2=fat",
		"-object", "tls-creds-x509,id=tls0,dir="+client+",endpoint=client",
		"-blockdev", fmt.Sprintf("driver=nbd,node-name=site,server.type=inet,server.host=127.0.0.1,server.port=%d,export=site,tls-creds=tls0,tls-hostname=localhost,read-only=on", port),
		"-device", "virtio-blk-pci,drive=site",
		"-blockdev", fmt.Sprintf("driver=nbd,node-name=keys,server.type=inet,server.host=127.0.0.1,server.port=%d,export=keys,tls-creds=tls0,tls-hostname=localhost,read-only=on", port),
		"-device", "virtio-blk-pci,drive=keys")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("QEMU did not power off within %v\nconsole:\n%s", guestBootTimeout, out)
	}
	if err != nil {
		t.Fatalf("QEMU: %v\nconsole:\n%s", err, out)
	}
	disks, err := parseGuestDisks(string(out))
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, out)
	}
	if len(disks) != 2 {
		t.Fatalf("the guest read %d disks, want 2 (site, keys)\nconsole:\n%s", len(disks), out)
	}
	t.Log("data disk (site, tar over TLS):")
	compareSums(t, wantSite, disks[0])
	t.Log("secret disk (keys, FAT over TLS):")
	compareSums(t, want, disks[1])
}

// parseGuestDisks splits the console output of a guest that read several
// disks into one block of marker lines each, in the order read.
func parseGuestDisks(console string) ([]map[string]string, error) {
	var starts []int
	for i := 0; ; {
		j := strings.Index(console[i:], guestBeginMarker)
		if j < 0 {
			break
		}
		starts = append(starts, i+j)
		i += j + len(guestBeginMarker)
	}
	if len(starts) == 0 {
		_, err := parseGuestSums(console) // says what went wrong
		return nil, err
	}
	var out []map[string]string
	for k, start := range starts {
		end := len(console)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		sums, err := parseGuestSums(console[start:end])
		if err != nil {
			return nil, fmt.Errorf("disk %d: %w", k+1, err)
		}
		out = append(out, sums)
	}
	return out, nil
}

// vmLck returns a process's locked memory in kB (/proc/PID/status).
func vmLck(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmLck:"); ok {
			var n int
			fmt.Sscanf(strings.TrimSpace(v), "%d", &n)
			return n
		}
	}
	t.Fatal("no VmLck in /proc/PID/status")
	return 0
}
