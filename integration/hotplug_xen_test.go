package integration

// Tests of contrib/xen/block-gitblk run the way libxl runs it: installed
// beside Xen's own hotplug scripts (Debian's xen-utils-common), with libxl's
// environment and a caller's PATH without sbin, killed as libxl kills it,
// with the real nbd-client against real servers (gitblk, nbdkit with TLS, a
// server that never answers). There is no nbd kernel module and no
// xenstored here: the device nodes are plain files, which the real
// nbd-client refuses only after its whole handshake ("Invalid nbd device
// target"), and xenstore is the stub of hotplug_test.go.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// xenScriptsDir is where xen-utils-common installs Xen's hotplug scripts.
const xenScriptsDir = "/etc/xen/scripts"

// libxlHotplugTimeout is LIBXL_HOTPLUG_TIMEOUT (libxl_internal.h): libxl
// SIGKILLs a hotplug script that runs longer.
const libxlHotplugTimeout = 40 * time.Second

// xlPath is the PATH of an xl started from a minimal environment (cron,
// a service manager, sudo with a secure_path without sbin): libxl passes it on.
const xlPath = "/usr/bin:/bin"

// installBesideXen copies Xen's own hotplug scripts and block-gitblk into one
// directory, as a dom0's /etc/xen/scripts holds them, and returns the path of
// the installed block-gitblk. Two lines of the copies differ: Xen's
// xen-hotplug-common.sh logs to the test's directory instead of
// /var/log/xen, and hotplugpath.sh (made at Xen's build from its install
// paths) names the stub directory as bindir, which Xen's scripts put first
// on their PATH, so that they call the stub xenstore tools.
func (e *hotplugEnv) installBesideXen() string {
	e.t.Helper()
	if _, err := os.Stat(filepath.Join(xenScriptsDir, "block-common.sh")); err != nil {
		e.t.Fatalf("Xen's block-common.sh: %v (install Debian package xen-utils-common)", err)
	}
	dir := filepath.Join(e.dir, "etc-xen-scripts")
	entries, err := os.ReadDir(xenScriptsDir)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ent := range entries {
		if !ent.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(xenScriptsDir, ent.Name()))
		if err != nil {
			e.t.Fatal(err)
		}
		switch ent.Name() {
		case "xen-hotplug-common.sh":
			b = []byte(strings.ReplaceAll(string(b), "/var/log/xen/xen-hotplug.log", filepath.Join(e.dir, "xen-hotplug.log")))
		case "hotplugpath.sh":
			b = []byte(strings.ReplaceAll(string(b), `bindir="/usr/bin"`, `bindir="`+filepath.Join(e.dir, "bin")+`"`))
		}
		mustWrite(e.t, filepath.Join(dir, ent.Name()), string(b))
		if err := os.Chmod(filepath.Join(dir, ent.Name()), 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	script, err := os.ReadFile(hotplugScript)
	if err != nil {
		e.t.Fatal(err)
	}
	installed := filepath.Join(dir, "block-gitblk")
	if err := os.WriteFile(installed, script, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return installed
}

// libxlCmd is the command libxl runs for a disk with script=block-gitblk on
// backend: the installed script with the action as its only argument, in /,
// stdin on /dev/null, with xl's environment (here just xlPath) plus what
// libxl adds (libxl_linux.c: script, XENBUS_TYPE, XENBUS_PATH,
// XENBUS_BASE_PATH). Output goes to a file, so a process left behind cannot
// hold the test up. The test hooks point the script at the fake dom0.
func (e *hotplugEnv) libxlCmd(script, command, backend string, extra ...string) (*exec.Cmd, string) {
	e.t.Helper()
	out, err := os.CreateTemp(e.dir, "script-output-")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { out.Close() })
	cmd := exec.Command(script, command)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append([]string{
		"PATH=" + xlPath,
		"script=" + script,
		"XENBUS_TYPE=vbd",
		"XENBUS_PATH=" + backend,
		"XENBUS_BASE_PATH=backend",
		"STUB_LOG=" + e.log,
		"STUB_STORE=" + e.store,
		"GITBLK_XEN_PATH=" + filepath.Join(e.dir, "bin"),
		"GITBLK_XEN_SYSFS=" + e.sysfs,
		"GITBLK_XEN_DEV=" + e.dev,
		"GITBLK_XEN_STATE=" + e.stateDir(),
	}, extra...)
	return cmd, out.Name()
}

func (e *hotplugEnv) stateDir() string { return filepath.Join(e.dir, "state") }

// runLibxl runs the script as libxl does and returns its exit status and
// output; it fails the test if the script outlives libxl's timeout.
func (e *hotplugEnv) runLibxl(script, command, backend string, extra ...string) (int, string) {
	e.t.Helper()
	cmd, outFile := e.libxlCmd(script, command, backend, extra...)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	code, err := hotplugWaitExit(cmd, libxlHotplugTimeout)
	out, _ := os.ReadFile(outFile)
	if err != nil {
		e.t.Fatalf("%s %s: %v\n%s", script, command, err, out)
	}
	return code, string(out)
}

// hotplugWaitExit waits for cmd for at most limit and returns its exit status; a
// command killed by a signal has status -1. On timeout it kills cmd.
func hotplugWaitExit(cmd *exec.Cmd, limit time.Duration) (int, error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err == nil {
			return 0, nil
		} else if errors.As(err, &exit) {
			return exit.ExitCode(), nil
		}
		return 0, err
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		return 0, errors.New("still running after " + limit.String() + " (libxl would have killed it)")
	}
}

// clientsLeft lists the live processes of this fake dom0's attaches: any
// process with an nbd-client argument and an argument under the test's
// directory (nbd-client itself, the stub's daemon, timeout(1) around them).
func (e *hotplugEnv) clientsLeft() []string {
	left, _ := e.clientProcs()
	return left
}

// clientProcs is clientsLeft with the process ids.
func (e *hotplugEnv) clientProcs() (left []string, pids []int) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue // gone, or a zombie
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		client, ours := false, false
		for _, a := range args {
			client = client || filepath.Base(a) == "nbd-client"
			ours = ours || strings.HasPrefix(a, e.dir)
		}
		if client && ours {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			left = append(left, strconv.Itoa(pid)+": "+strings.Join(args, " "))
			pids = append(pids, pid)
		}
	}
	return left, pids
}

// killClients kills what a failed test left of its attaches, so that it
// does not outlive the test.
func (e *hotplugEnv) killClients() {
	_, pids := e.clientProcs()
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// waitNoClients fails the test unless every attach process of this dom0 is
// gone within limit.
func (e *hotplugEnv) waitNoClients(limit time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		left := e.clientsLeft()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Errorf("nbd-client processes left %v after the script ended:\n%s", limit, strings.Join(left, "\n"))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lockFree reports whether the script's attach lock can be taken now, with
// the flock(2) the script's flock(1) uses.
func (e *hotplugEnv) lockFree() bool {
	e.t.Helper()
	f, err := os.OpenFile(filepath.Join(e.stateDir(), "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}

// connected reports whether the fake kernel shows a client on device name.
func (e *hotplugEnv) connected(name string) bool {
	_, err := os.Stat(filepath.Join(e.sysfs, "block", name, "pid"))
	return err == nil
}

// silentServer listens on loopback TCP and accepts connections without ever
// sending a byte, as a hung server does. Each accepted connection is
// reported on the returned channel.
func silentServer(t *testing.T) (port string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 16)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, ch
}

// wantFailedAdd checks the xenstore result of a failed add: status 1,
// hotplug-status=error, a hotplug-error that contains want, no
// physical-device.
func (e *hotplugEnv) wantFailedAdd(backend string, code int, out, want string) {
	e.t.Helper()
	if code != 1 {
		e.t.Errorf("add: exit status %d, want 1\n%s", code, out)
	}
	if v, _ := e.xenstore(backend + "/hotplug-status"); v != "error" {
		e.t.Errorf("hotplug-status %q, want error\n%s", v, out)
	}
	if v, _ := e.xenstore(backend + "/hotplug-error"); !strings.Contains(v, want) {
		e.t.Errorf("hotplug-error %q, want it to contain %q\n%s", v, want, out)
	}
	if _, ok := e.xenstore(backend + "/physical-device"); ok {
		e.t.Error("physical-device written for a failed add")
	}
}

// TestHotplugRealClient runs the installed script as libxl does with the
// real nbd-client against a real gitblk server:
//   - PATH: the caller's PATH has no sbin, where nbd-client lives; the
//     script must still run it (the client gets through the handshake and
//     only then refuses the plain file as a device);
//   - the server's reason: an unknown export fails with the server's own
//     message in hotplug-error, not just "nbd-client failed";
//   - trailing blanks in target= are not part of the export name (with
//     them, the server would answer "unknown export").
func TestHotplugRealClient(t *testing.T) {
	testutil.NeedTool(t, "nbd-client", "nbd-client")
	for _, d := range filepath.SplitList(xlPath) {
		if _, err := os.Stat(filepath.Join(d, "nbd-client")); err == nil {
			t.Fatalf("nbd-client is in %s, on xl's PATH %s: this test needs it outside (Debian has it in /usr/sbin)", d, xlPath)
		}
	}
	repo := newRepo(t, map[string]string{"index.html": "<p>hello</p>\n"})
	sock, _ := startServe(t, repo, "main")
	for _, tc := range []struct{ name, target, want string }{
		{"PATH without sbin", "unix:" + sock + ":tar", "Invalid nbd device target"},
		{"server's reason", "unix:" + sock + ":nosuch", `unknown export "nosuch"`},
		{"trailing blanks", "unix:" + sock + ":tar   ", "Invalid nbd device target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bk := hotplugBackend
			e := newHotplugEnv(t, 3, map[string]string{bk + "/params": tc.target, bk + "/mode": "r"})
			// Only xenstore and logger are stubs here: nbd-client is real.
			for _, stub := range []string{"nbd-client", "modprobe"} {
				if err := os.Remove(filepath.Join(e.dir, "bin", stub)); err != nil {
					t.Fatal(err)
				}
			}
			script := e.installBesideXen()
			code, out := e.runLibxl(script, "add", bk)
			e.wantFailedAdd(bk, code, out, tc.want)
			if v, _ := e.xenstore(bk + "/hotplug-error"); strings.Contains(v, "status 127") || strings.Contains(v, "not found") {
				t.Errorf("nbd-client was not found: hotplug-error %q", v)
			}
			if !e.lockFree() {
				t.Error("attach lock still held after the script exited")
			}
			e.waitNoClients(5 * time.Second)
		})
	}
}

// TestHotplugSlowServer: a server that accepts and never answers. nbd-client's
// -timeout does not bound its handshake, so without the script's own time
// limit the attach would hang until libxl's SIGKILL at 40 s. With the limit
// set to 2 s, add fails well before that, says why, leaves no nbd-client and
// frees the lock.
func TestHotplugSlowServer(t *testing.T) {
	testutil.NeedTool(t, "nbd-client", "nbd-client")
	port, accepted := silentServer(t)
	bk := hotplugBackend
	e := newHotplugEnv(t, 3, map[string]string{bk + "/params": "127.0.0.1:" + port + ":tar", bk + "/mode": "r"})
	for _, stub := range []string{"nbd-client", "modprobe"} {
		if err := os.Remove(filepath.Join(e.dir, "bin", stub)); err != nil {
			t.Fatal(err)
		}
	}
	script := e.installBesideXen()
	start := time.Now()
	code, out := e.runLibxl(script, "add", bk, "GITBLK_XEN_ATTACH_TIMEOUT=2")
	took := time.Since(start)
	e.wantFailedAdd(bk, code, out, "no answer from the server within 2s")
	select {
	case <-accepted:
	default:
		t.Error("the server never saw a connection: nbd-client did not run")
	}
	// 2 s, plus at most 2 s between timeout(1)'s SIGTERM and SIGKILL, plus
	// the detach: far below libxl's 40 s even on a loaded machine.
	if took > 20*time.Second {
		t.Errorf("add took %v with a 2 s attach limit", took)
	}
	if !e.lockFree() {
		t.Error("attach lock still held after the script exited")
	}
	e.waitNoClients(5 * time.Second)
	if _, err := os.Stat(filepath.Join(e.stateDir(), strings.ReplaceAll(bk, "/", "_"))); !os.IsNotExist(err) {
		t.Errorf("state file left after a failed add (stat: %v)", err)
	}
}

// TestHotplugKilledAttach kills the script mid-attach, as libxl does at its
// timeout (SIGKILL, then it runs the script with remove) or as an operator
// or service manager does (SIGTERM), and checks that the lock is free, no
// nbd-client is left and the device is not left connected.
func TestHotplugKilledAttach(t *testing.T) {
	testutil.NeedTool(t, "nbd-client", "nbd-client")
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		// stubHang: the stub nbd-client connects the device and then hangs;
		// otherwise the real nbd-client talks to a silent server.
		stubHang bool
		// remove: run the script with remove afterwards, as libxl does
		// after a failed add.
		remove bool
	}{
		{"SIGTERM, real client", syscall.SIGTERM, false, false},
		{"SIGKILL then remove, real client", syscall.SIGKILL, false, true},
		{"SIGKILL then remove, client hung on a connected device", syscall.SIGKILL, true, true},
		{"SIGTERM, client hung on a connected device", syscall.SIGTERM, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, accepted := silentServer(t)
			bk := hotplugBackend
			e := newHotplugEnv(t, 3, map[string]string{bk + "/params": "127.0.0.1:" + port + ":tar", bk + "/mode": "r"})
			extra := []string{"GITBLK_XEN_ATTACH_TIMEOUT=30"}
			if tc.stubHang {
				extra = append(extra, "STUB_NBD_HANG=1")
			} else if err := os.Remove(filepath.Join(e.dir, "bin", "nbd-client")); err != nil {
				t.Fatal(err)
			}
			script := e.installBesideXen()
			cmd, outFile := e.libxlCmd(script, "add", bk, extra...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Wait until the attach is under way: the real client has
			// connected, or the stub has connected the device.
			deadline := time.After(20 * time.Second)
			for attaching := false; !attaching; {
				select {
				case <-accepted:
					attaching = true
				case <-deadline:
					_ = cmd.Process.Kill()
					out, _ := os.ReadFile(outFile)
					t.Fatalf("attach did not start within 20 s\n%s", out)
				case <-time.After(20 * time.Millisecond):
					attaching = tc.stubHang && e.connected("nbd1") && len(e.clientsLeft()) > 0
				}
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			if _, err := hotplugWaitExit(cmd, 15*time.Second); err != nil {
				t.Fatalf("script after %v: %v", tc.sig, err)
			}
			out, _ := os.ReadFile(outFile)
			if tc.sig == syscall.SIGTERM {
				if v, _ := e.xenstore(bk + "/hotplug-error"); !strings.Contains(v, "interrupted by SIGTERM") {
					t.Errorf("hotplug-error %q after SIGTERM, want it to say so\n%s", v, out)
				}
			}
			// The lock belongs to the script alone: free at once, even after
			// SIGKILL, whatever the client is doing.
			if !e.lockFree() {
				t.Errorf("attach lock held after the script got %v: later attaches would block\n%s", tc.sig, out)
			}
			if tc.remove {
				code, rout := e.runLibxl(script, "remove", bk)
				if code != 0 {
					t.Errorf("remove: exit status %d\n%s", code, rout)
				}
			}
			e.waitNoClients(10 * time.Second)
			if e.connected("nbd1") {
				t.Errorf("nbd1 left connected after %v%s", tc.sig, map[bool]string{true: " and remove"}[tc.remove])
			}
			if !e.lockFree() {
				t.Error("attach lock held at the end")
			}
		})
	}
}

// TestHotplugClientHangsOnDevice: a client that connected the device and then
// hangs is ended by the attach time limit, and the device is detached, not
// leaked.
func TestHotplugClientHangsOnDevice(t *testing.T) {
	bk := hotplugBackend
	e := newHotplugEnv(t, 3, map[string]string{bk + "/params": "unix:/run/gitblk/site.sock:tar", bk + "/mode": "r"})
	script := e.installBesideXen()
	code, out := e.runLibxl(script, "add", bk, "GITBLK_XEN_ATTACH_TIMEOUT=1", "STUB_NBD_HANG=1")
	e.wantFailedAdd(bk, code, out, "no answer from the server within 1s")
	if e.connected("nbd1") {
		t.Error("nbd1 left connected after the attach timed out")
	}
	dev := filepath.Join(e.dev, "nbd1")
	calls := e.calls("nbd-client")
	if len(calls) != 2 || calls[1] != "-d "+dev {
		t.Errorf("nbd-client calls %q, want the attach and -d %s", calls, dev)
	}
	e.waitNoClients(5 * time.Second)
}

// TestHotplugIoctlMode: in ioctl mode nbd-client daemonizes and the daemon
// keeps the fds it inherited for as long as the guest runs. It must not have
// the attach lock: a second guest's attach and both detaches go through.
func TestHotplugIoctlMode(t *testing.T) {
	e := newHotplugEnv(t, 3, map[string]string{
		"backend/vbd/5/51728/params": "nonetlink,unix:/run/gitblk/a.sock:tar",
		"backend/vbd/5/51728/mode":   "r",
		"backend/vbd/6/51728/params": "nonetlink,unix:/run/gitblk/b.sock:fat",
		"backend/vbd/6/51728/mode":   "r",
	})
	script := e.installBesideXen()
	lockWait := "GITBLK_XEN_LOCK_TIMEOUT=3"
	if code, out := e.runLibxl(script, "add", "backend/vbd/5/51728", lockWait); code != 0 {
		t.Fatalf("first add: status %d\n%s", code, out)
	}
	pidText, err := os.ReadFile(filepath.Join(e.sysfs, "block", "nbd1", "pid"))
	if err != nil {
		t.Fatalf("nbd1 not connected after the first add: %v", err)
	}
	daemon := strings.TrimSpace(string(pidText))
	if _, err := strconv.Atoi(daemon); err != nil || daemon == "4242" {
		t.Fatalf("the stub did not daemonize: pid file %q", daemon)
	}
	lockPath := filepath.Join(e.stateDir(), "lock")
	fds, _ := filepath.Glob("/proc/" + daemon + "/fd/*")
	if len(fds) == 0 {
		t.Fatalf("daemon %s has no fds to inspect (gone?)", daemon)
	}
	for _, fd := range fds {
		if target, _ := os.Readlink(fd); target == lockPath {
			t.Errorf("the daemonized client %s holds the attach lock (%s)", daemon, fd)
		}
	}
	if code, out := e.runLibxl(script, "add", "backend/vbd/6/51728", lockWait); code != 0 {
		t.Fatalf("second add with the first guest's client running: status %d\n%s", code, out)
	}
	if v, _ := e.xenstore("backend/vbd/6/51728/physical-device-path"); v != filepath.Join(e.dev, "nbd2") {
		t.Errorf("second guest got %q, want nbd2", v)
	}
	for _, bk := range []string{"backend/vbd/5/51728", "backend/vbd/6/51728"} {
		if code, out := e.runLibxl(script, "remove", bk, lockWait); code != 0 {
			t.Errorf("remove %s: status %d\n%s", bk, code, out)
		}
	}
	e.waitNoClients(5 * time.Second)
	for _, name := range []string{"nbd1", "nbd2"} {
		if e.connected(name) {
			t.Errorf("%s still connected after remove", name)
		}
	}
}

// TestHotplugBesideXenBlockCommon checks the script's xenstore output against
// Xen's own: for the same device node, block-gitblk writes the
// physical-device and physical-device-path that write_dev of Xen's
// block-common.sh (sourced the way Xen's block scripts source it) writes.
func TestHotplugBesideXenBlockCommon(t *testing.T) {
	bk := hotplugBackend
	e := newHotplugEnv(t, 3, map[string]string{bk + "/params": "unix:/run/gitblk/site.sock:tar", bk + "/mode": "r"})
	dev := filepath.Join(e.dev, "nbd1")
	if err := os.Remove(dev); err != nil {
		t.Fatal(err)
	}
	// nbd1 is 43:32, as in the fake sysfs.
	if err := syscall.Mknod(dev, syscall.S_IFBLK|0o600, 43<<8|32); err != nil {
		t.Skipf("cannot make a block device node here (mknod: %v): Xen's write_dev stat()s one", err)
	}
	script := e.installBesideXen()
	if code, out := e.runLibxl(script, "add", bk); code != 0 {
		t.Fatalf("add: status %d\n%s", code, out)
	}
	xenWriteDev := filepath.Join(filepath.Dir(script), "xen-write-dev")
	mustWrite(t, xenWriteDev, `#!/bin/bash
dir=$(dirname "$0")
. "$dir/block-common.sh"
write_dev "$DEV"
`)
	if err := os.Chmod(xenWriteDev, 0o755); err != nil {
		t.Fatal(err)
	}
	xenBk := "backend/vbd/7/51728"
	code, out := e.runLibxl(xenWriteDev, "add", xenBk, "DEV="+dev)
	if code != 0 {
		log, _ := os.ReadFile(filepath.Join(e.dir, "xen-hotplug.log"))
		t.Fatalf("Xen's write_dev: status %d\n%s\n%s", code, out, log)
	}
	for _, key := range []string{"physical-device", "physical-device-path", "hotplug-status"} {
		ours, _ := e.xenstore(bk + "/" + key)
		xens, ok := e.xenstore(xenBk + "/" + key)
		if !ok || ours != xens {
			t.Errorf("%s: block-gitblk wrote %q, Xen's block-common.sh %q", key, ours, xens)
		}
	}
}

// hotplugCA is a certificate authority made in the test.
type hotplugCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newHotplugCA(t *testing.T, name string) *hotplugCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &hotplugCA{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for cn (also a DNS name) signed by ca and its
// key as certFile and keyFile.
func (ca *hotplugCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	mustWrite(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHotplugTLSOptions checks the nbd-client command lines the TLS options
// of the target give, and the options the script refuses.
func TestHotplugTLSOptions(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"client-cert.pem", "client-key.pem", "ca-cert.pem", "other.pem"} {
		mustWrite(t, filepath.Join(dir, f), "pem\n")
	}
	tls := " -certfile " + dir + "/client-cert.pem -keyfile " + dir + "/client-key.pem -cacertfile " + dir + "/ca-cert.pem"
	bk := hotplugBackend + "/"
	for _, tc := range []struct {
		name, target string
		want         string // nbd-client arguments; DEV for the device
		wantErr      string
	}{
		{"tls dir on a unix socket", "tls=" + dir + ",tlshostname=gitblk.test,unix:/run/gitblk/keys.sock:keys",
			"-unix /run/gitblk/keys.sock -N keys DEV -readonly -timeout 30" + tls + " -tlshostname gitblk.test", ""},
		{"tls dir with a slash, tcp: host name from the address", "tls=" + dir + "/,gitblk.test:10809:keys/site",
			"gitblk.test 10809 -N keys/site DEV -readonly -timeout 30" + tls + " -tlshostname gitblk.test", ""},
		{"single files, ipv6, explicit host name", "certfile=" + dir + "/client-cert.pem,keyfile=" + dir + "/client-key.pem,cacertfile=" + dir + "/other.pem,tlshostname=srv.test,[::1]:10809:refs/tags/v1:fat",
			"::1 10809 -N refs/tags/v1:fat DEV -readonly -timeout 30 -certfile " + dir + "/client-cert.pem -keyfile " + dir + "/client-key.pem -cacertfile " + dir + "/other.pem -tlshostname srv.test", ""},
		{"io timeout and ioctl mode", "timeout=5,nonetlink,unix:/run/gitblk/site.sock:tar",
			"-unix /run/gitblk/site.sock -N tar DEV -readonly -timeout 5 -nonetlink", ""},
		{"an export name with a comma", "unix:/run/gitblk/site.sock:refs/tags/a,b",
			"-unix /run/gitblk/site.sock -N refs/tags/a,b DEV -readonly -timeout 30", ""},
		{"CA on a unix socket without a host name", "tls=" + dir + ",unix:/run/gitblk/keys.sock:keys", "", "needs tlshostname="},
		{"certificate without key", "certfile=" + dir + "/client-cert.pem,unix:/run/gitblk/keys.sock:keys", "", "certfile and keyfile go together"},
		{"host name without certificates", "tlshostname=x.test,unix:/run/gitblk/keys.sock:keys", "", "without certificates"},
		{"empty value", "tls=,unix:/run/gitblk/keys.sock:keys", "", "empty value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newHotplugEnv(t, 3, map[string]string{bk + "params": tc.target, bk + "mode": "r"})
			out, err := e.run("add")
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("add succeeded, want an error with %q\n%s", tc.wantErr, out)
				}
				if v, _ := e.xenstore(bk + "hotplug-error"); !strings.Contains(v, tc.wantErr) {
					t.Errorf("hotplug-error %q, want %q", v, tc.wantErr)
				}
				wantCalls(t, "nbd-client", e.calls("nbd-client"), nil)
				return
			}
			if err != nil {
				t.Fatalf("add: %v\n%s", err, out)
			}
			want := strings.ReplaceAll(tc.want, "DEV", filepath.Join(e.dev, "nbd1"))
			wantCalls(t, "nbd-client", e.calls("nbd-client"), []string{want})
		})
	}
}

// TestHotplugTLSRealClient attaches through the script with the real
// nbd-client to nbdkit serving over TLS on a unix socket (--tls=require,
// client certificates verified), with certificates made here: the right
// client directory gets through TLS and the whole handshake; a client
// certificate from another CA, a wrong host name, or no TLS at all does not.
func TestHotplugTLSRealClient(t *testing.T) {
	testutil.NeedTool(t, "nbd-client", "nbd-client")
	nbdkit := testutil.NeedTool(t, "nbdkit", "nbdkit")
	ca := newHotplugCA(t, "gitblk test CA")
	other := newHotplugCA(t, "another CA")
	serverDir := t.TempDir()
	mustWrite(t, filepath.Join(serverDir, "ca-cert.pem"), string(ca.pem))
	ca.issue(t, "gitblk.test", x509.ExtKeyUsageServerAuth, filepath.Join(serverDir, "server-cert.pem"), filepath.Join(serverDir, "server-key.pem"))
	clientDir := t.TempDir()
	mustWrite(t, filepath.Join(clientDir, "ca-cert.pem"), string(ca.pem))
	ca.issue(t, "dom0.test", x509.ExtKeyUsageClientAuth, filepath.Join(clientDir, "client-cert.pem"), filepath.Join(clientDir, "client-key.pem"))
	strangerDir := t.TempDir()
	mustWrite(t, filepath.Join(strangerDir, "ca-cert.pem"), string(ca.pem))
	other.issue(t, "dom0.test", x509.ExtKeyUsageClientAuth, filepath.Join(strangerDir, "client-cert.pem"), filepath.Join(strangerDir, "client-key.pem"))

	sockDir, err := os.MkdirTemp("", "gitblk-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "nbd.sock")
	srv := exec.Command(nbdkit, "--foreground", "--unix", sock, "--tls=require",
		"--tls-certificates="+serverDir, "--tls-verify-peer", "memory", "1M")
	srvLog := &testutil.LogBuffer{}
	srv.Stdout, srv.Stderr = srvLog, srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("nbdkit log:\n%s", srvLog.String())
		}
	})
	for deadline := time.Now().Add(serveReadyTimeout); ; {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("nbdkit not listening on %s: %v", sock, err)
		}
		time.Sleep(servePollInterval)
	}

	for _, tc := range []struct{ name, options, want string }{
		// Past TLS and the handshake: only the plain-file device fails.
		{"client certificate of the server's CA", "tls=" + clientDir + ",tlshostname=gitblk.test,", "Invalid nbd device target"},
		{"client certificate of another CA", "tls=" + strangerDir + ",tlshostname=gitblk.test,", "failed (status 1): "},
		{"wrong server name", "tls=" + clientDir + ",tlshostname=other.test,", "failed (status 1): "},
		{"no TLS", "", "failed (status 1): "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bk := hotplugBackend
			e := newHotplugEnv(t, 3, map[string]string{bk + "/params": tc.options + "unix:" + sock + ":secret", bk + "/mode": "r"})
			for _, stub := range []string{"nbd-client", "modprobe"} {
				if err := os.Remove(filepath.Join(e.dir, "bin", stub)); err != nil {
					t.Fatal(err)
				}
			}
			script := e.installBesideXen()
			code, out := e.runLibxl(script, "add", bk)
			e.wantFailedAdd(bk, code, out, tc.want)
			if tc.want != "Invalid nbd device target" {
				if v, _ := e.xenstore(bk + "/hotplug-error"); strings.Contains(v, "Invalid nbd device target") {
					t.Errorf("got through the handshake: hotplug-error %q", v)
				}
			}
			e.waitNoClients(5 * time.Second)
		})
	}
}

// xlDiskLine matches an xl disk line that uses block-gitblk in the docs.
var xlDiskLine = regexp.MustCompile(`'[^']*script=block-gitblk[^']*'`)

// TestHotplugDocsVdev checks every xl disk line with block-gitblk in the
// documentation: read-only, and, unless its guest is PV or PVH, on a vdev
// from xvde on: for HVM guests libxl also emulates xvda-xvdd as IDE disks
// (hda-hdd) and qemu-xen refuses read-only IDE disks (libxl_dm.c).
func TestHotplugDocsVdev(t *testing.T) {
	emulated := regexp.MustCompile(`vdev=(xvd[a-d]|hd[a-d]|sd[a-z])\b`)
	pvType := regexp.MustCompile(`(?m)^\s*type\s*=\s*"(pvh|pv)"`)
	for _, doc := range []string{"../README.md", "../contrib/xen/README.md", "../contrib/mirage/README.md", hotplugScript} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		// A fenced block (or the whole file when it has none) is the guest
		// configuration a disk line belongs to.
		for i, block := range strings.Split(string(b), "```") {
			for _, line := range xlDiskLine.FindAllString(block, -1) {
				if !strings.Contains(line, "access=ro") {
					t.Errorf("%s: %s: not access=ro", doc, line)
				}
				if emulated.MatchString(line) && !pvType.MatchString(block) {
					t.Errorf("%s (block %d): %s: an HVM guest emulates this vdev as IDE, which qemu-xen refuses read-only; use xvde or later, or say type = \"pvh\"", doc, i, line)
				}
			}
		}
	}
}

// TestHotplugShellcheck runs shellcheck on the script: no finding at any
// level.
func TestHotplugShellcheck(t *testing.T) {
	sc := testutil.NeedTool(t, "shellcheck", "shellcheck")
	if out, err := exec.Command(sc, "--shell=bash", hotplugScript).CombinedOutput(); err != nil {
		t.Errorf("shellcheck %s: %v\n%s", hotplugScript, err, out)
	}
}

// TestHotplugKilledAttachKeepsItsDevice: an add SIGKILLed before its client
// connected leaves its device unconnected until libxl's remove for it, which
// detaches that device. A second guest attaching in between must not get the
// same device, or the first guest's remove would detach the second guest's
// disk.
func TestHotplugKilledAttachKeepsItsDevice(t *testing.T) {
	first, second := "backend/vbd/5/51728", "backend/vbd/6/51728"
	e := newHotplugEnv(t, 3, map[string]string{
		first + "/params":  "unix:/run/gitblk/a.sock:tar",
		first + "/mode":    "r",
		second + "/params": "unix:/run/gitblk/b.sock:tar",
		second + "/mode":   "r",
	})
	script := e.installBesideXen()
	cmd, outFile := e.libxlCmd(script, "add", first, "STUB_NBD_HANG=before")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); len(e.clientsLeft()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			out, _ := os.ReadFile(outFile)
			t.Fatalf("first attach did not start within 20 s\n%s", out)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := hotplugWaitExit(cmd, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, out := e.runLibxl(script, "add", second); code != 0 {
		t.Fatalf("second add: status %d\n%s", code, out)
	}
	got, _ := e.xenstore(second + "/physical-device-path")
	if got != filepath.Join(e.dev, "nbd2") {
		t.Errorf("second guest got %q, want nbd2 (nbd1 is the killed attach's)", got)
	}
	if code, out := e.runLibxl(script, "remove", first); code != 0 {
		t.Errorf("remove of the killed attach: status %d\n%s", code, out)
	}
	if !e.connected(filepath.Base(got)) {
		t.Errorf("the killed attach's remove detached the second guest's %s", filepath.Base(got))
	}
	wantCalls(t, "nbd-client -d", filterPrefix(e.calls("nbd-client"), "-d "), []string{"-d " + filepath.Join(e.dev, "nbd1")})
	e.waitNoClients(5 * time.Second)
}

// filterPrefix returns the elements of calls that start with prefix.
func filterPrefix(calls []string, prefix string) []string {
	var out []string
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}
