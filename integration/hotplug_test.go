package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// hotplugScript is the Xen hotplug script under test.
const hotplugScript = "../contrib/xen/block-gitblk"

// callSep separates the arguments of one recorded stub call.
const callSep = "\x1f"

// hotplugBackend is the XENBUS_PATH libxl gives the script for a guest's
// first extra disk.
const hotplugBackend = "backend/vbd/5/51728"

// stubRecorder is a shell prelude every stub runs: it appends its name and
// arguments, separated by callSep, as one line of $STUB_LOG.
const stubRecorder = `#!/bin/bash
{ printf '%s' "${0##*/}"; for a in "$@"; do printf '\x1f%s' "$a"; done; echo; } >>"$STUB_LOG"
`

// hotplugStubs are the commands the script may run, with fake behaviour:
// xenstore reads and writes go to a key<TAB>value file (last one wins);
// nbd-client creates and removes the sysfs pid file a connected device has.
// With STUB_NBD_HANG set, nbd-client hangs after connecting the device, as a
// client stuck in the kernel would; with STUB_NBD_HANG=before, before it,
// as a client in a handshake with a server that never answers. With -nonetlink it daemonizes as the real
// client does in ioctl mode (daemon(3): a new session, stdio on /dev/null,
// every other inherited fd kept) and the daemon, which the device's pid file
// names, lives until nbd-client -d removes that file.
var hotplugStubs = map[string]string{
	"xenstore-read": stubRecorder + `
v=$(awk -F '\t' -v k="$1" '$1 == k { v = $2; found = 1 } END { if (found) print v; else exit 1 }' "$STUB_STORE") || {
	echo "xenstore-read: $1: not found" >&2; exit 1; }
printf '%s\n' "$v"
`,
	"xenstore-write": stubRecorder + `
while [ $# -ge 2 ]; do printf '%s\t%s\n' "$1" "$2" >>"$STUB_STORE"; shift 2; done
`,
	"nbd-client": stubRecorder + `
if [ "$1" = -d ]; then rm -f "$GITBLK_XEN_SYSFS/block/${2##*/}/pid"; exit 0; fi
[ -n "${STUB_NBD_FAIL:-}" ] && { echo "nbd-client: Connection refused" >&2; exit 1; }
if [ "${STUB_NBD_HANG:-}" = before ]; then while :; do sleep 0.1; done; fi
pidf=
for a in "$@"; do case "$a" in "$GITBLK_XEN_DEV"/nbd*) pidf=$GITBLK_XEN_SYSFS/block/${a##*/}/pid; echo 4242 >"$pidf" ;; esac; done
case " $* " in *" -nonetlink "*)
	setsid bash -c 'exec </dev/null >/dev/null 2>&1; while [ -e "$1" ]; do sleep 0.1; done' nbd-client "$pidf" &
	echo $! >"$pidf"
	exit 0 ;;
esac
if [ -n "${STUB_NBD_HANG:-}" ]; then while :; do sleep 0.1; done; fi
`,
	"modprobe": stubRecorder + `
for i in 0 1; do mkdir -p "$GITBLK_XEN_SYSFS/block/nbd$i"; echo 0 >"$GITBLK_XEN_SYSFS/block/nbd$i/size"; echo "43:$((i * 32))" >"$GITBLK_XEN_SYSFS/block/nbd$i/dev"; done
`,
	"logger": stubRecorder,
}

// hotplugEnv is one fake dom0: stub commands, a xenstore file, a sysfs tree.
type hotplugEnv struct {
	t     *testing.T
	dir   string
	store string
	log   string
	sysfs string
	dev   string
	extra []string
}

// newHotplugEnv makes a fake dom0 where nbd0 is busy and nbd1, nbd2 are free
// (nbdCount devices in all; 0 means the nbd module is not loaded).
func newHotplugEnv(t *testing.T, nbdCount int, store map[string]string) *hotplugEnv {
	t.Helper()
	testutil.NeedTool(t, "flock", "util-linux")
	testutil.NeedTool(t, "awk", "mawk")
	e := &hotplugEnv{t: t, dir: t.TempDir()}
	bin := filepath.Join(e.dir, "bin")
	e.store = filepath.Join(e.dir, "xenstore")
	e.log = filepath.Join(e.dir, "calls")
	e.sysfs = filepath.Join(e.dir, "sys")
	e.dev = filepath.Join(e.dir, "dev")
	for _, d := range []string{bin, e.dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range hotplugStubs {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range nbdCount {
		d := filepath.Join(e.sysfs, "block", "nbd"+string(rune('0'+i)))
		// The device node: a plain file, which the real nbd-client takes
		// through its handshake and then refuses as "Invalid nbd device
		// target".
		mustWrite(t, filepath.Join(e.dev, "nbd"+string(rune('0'+i))), "")
		mustWrite(t, filepath.Join(d, "size"), "0\n")
		mustWrite(t, filepath.Join(d, "dev"), "43:"+[]string{"0", "32", "64"}[i]+"\n")
		if i == 0 {
			mustWrite(t, filepath.Join(d, "pid"), "1234\n")
			mustWrite(t, filepath.Join(d, "size"), "1048576\n")
		}
	}
	var lines []string
	for k, v := range store {
		lines = append(lines, k+"\t"+v+"\n")
	}
	slices.Sort(lines)
	mustWrite(t, e.store, strings.Join(lines, ""))
	mustWrite(t, e.log, "")
	t.Cleanup(e.killClients)
	return e
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run runs the script with command (add or remove) and returns its
// combined output and exit error.
func (e *hotplugEnv) run(command string) (string, error) {
	e.t.Helper()
	cmd := exec.Command("bash", hotplugScript, command)
	cmd.Env = append([]string{
		"PATH=" + filepath.Join(e.dir, "bin") + ":/usr/sbin:/usr/bin:/sbin:/bin",
		// The script sets its own PATH; this puts the stubs before it.
		"GITBLK_XEN_PATH=" + filepath.Join(e.dir, "bin"),
		"XENBUS_PATH=" + hotplugBackend,
		"STUB_LOG=" + e.log,
		"STUB_STORE=" + e.store,
		"GITBLK_XEN_SYSFS=" + e.sysfs,
		"GITBLK_XEN_DEV=" + e.dev,
		"GITBLK_XEN_STATE=" + filepath.Join(e.dir, "state"),
	}, e.extra...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// calls returns the recorded stub calls other than logger, each as its
// arguments joined by spaces (arguments quoted when they hold a space or are
// empty).
func (e *hotplugEnv) calls(prog string) []string {
	e.t.Helper()
	b, err := os.ReadFile(e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	var calls []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		args := strings.Split(line, callSep)
		if args[0] != prog {
			continue
		}
		for i, a := range args {
			if a == "" || strings.ContainsAny(a, " \t") {
				args[i] = "'" + a + "'"
			}
		}
		calls = append(calls, strings.Join(args[1:], " "))
	}
	return calls
}

// xenstore returns the fake store's current value of key.
func (e *hotplugEnv) xenstore(key string) (string, bool) {
	e.t.Helper()
	b, err := os.ReadFile(e.store)
	if err != nil {
		e.t.Fatal(err)
	}
	v, found := "", false
	for _, line := range strings.Split(string(b), "\n") {
		if k, val, ok := strings.Cut(line, "\t"); ok && k == key {
			v, found = val, true
		}
	}
	return v, found
}

func wantCalls(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s calls:\n got  %q\n want %q", what, got, want)
	}
}

// TestHotplugAddRemove attaches and detaches exports through the script with
// each target syntax and checks the nbd-client command lines and what the
// script writes to xenstore.
func TestHotplugAddRemove(t *testing.T) {
	bk := hotplugBackend + "/"
	for _, tc := range []struct {
		name, target string
		wantClient   string // without the device and the options after it
	}{
		{"unix socket", "unix:/run/gitblk/site.sock:tar", "-unix /run/gitblk/site.sock -N tar"},
		{"unix default export", "unix:/run/gitblk/site.sock:", "-unix /run/gitblk/site.sock"},
		{"tcp", "127.0.0.1:10809:fat", "127.0.0.1 10809 -N fat"},
		{"ipv6", "[::1]:10809:tar", "::1 10809 -N tar"},
		{"unix ref export", "unix:/run/gitblk/site.sock:refs/tags/v1:fat", "-unix /run/gitblk/site.sock -N refs/tags/v1:fat"},
		{"tcp ref export", "[::1]:10809:refs/tags/v1", "::1 10809 -N refs/tags/v1"},
		// xl passes target verbatim: blanks before the closing quote are
		// not part of the export name.
		{"trailing blanks", "unix:/run/gitblk/site.sock:tar  ", "-unix /run/gitblk/site.sock -N tar"},
		{"leading blanks", "  [::1]:10809:fat ", "::1 10809 -N fat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newHotplugEnv(t, 3, map[string]string{bk + "params": tc.target, bk + "mode": "r"})
			if out, err := e.run("add"); err != nil {
				t.Fatalf("add: %v\n%s", err, out)
			}
			dev := filepath.Join(e.dev, "nbd1") // nbd0 is busy
			attach := tc.wantClient + " " + dev + " -readonly -timeout 30"
			wantCalls(t, "nbd-client", e.calls("nbd-client"), []string{attach})
			wantCalls(t, "modprobe", e.calls("modprobe"), nil)
			wantCalls(t, "xenstore-write", e.calls("xenstore-write"), []string{
				bk + "physical-device 2b:20",
				bk + "physical-device-path " + dev,
				bk + "hotplug-status connected",
			})

			if out, err := e.run("remove"); err != nil {
				t.Fatalf("remove: %v\n%s", err, out)
			}
			wantCalls(t, "nbd-client", e.calls("nbd-client"), []string{attach, "-d " + dev})
			if _, err := os.Stat(filepath.Join(e.sysfs, "block", "nbd1", "pid")); !os.IsNotExist(err) {
				t.Errorf("nbd1 still connected after remove (stat pid: %v)", err)
			}
		})
	}
}

// TestHotplugLoadsModuleAndPicksFreeDevice: without the nbd module the script
// loads it; with a device taken by an earlier guest it picks the next one.
func TestHotplugLoadsModuleAndPicksFreeDevice(t *testing.T) {
	bk := hotplugBackend + "/"
	e := newHotplugEnv(t, 0, map[string]string{bk + "params": "unix:/run/gitblk/a.sock:tar", bk + "mode": "r"})
	if out, err := e.run("add"); err != nil {
		t.Fatalf("first add: %v\n%s", err, out)
	}
	wantCalls(t, "modprobe", e.calls("modprobe"), []string{"nbd"})
	first := filepath.Join(e.dev, "nbd0")
	if v, _ := e.xenstore(bk + "physical-device"); v != "2b:0" {
		t.Errorf("physical-device %q, want 2b:0", v)
	}
	// A second guest, with the first still attached, gets nbd1.
	e.extra = []string{"XENBUS_PATH=backend/vbd/6/51728"}
	mustWrite(t, e.store, "backend/vbd/6/51728/params\tunix:/run/gitblk/b.sock:fat\nbackend/vbd/6/51728/mode\tr\n")
	if out, err := e.run("add"); err != nil {
		t.Fatalf("second add: %v\n%s", err, out)
	}
	second := filepath.Join(e.dev, "nbd1")
	wantCalls(t, "nbd-client", e.calls("nbd-client"), []string{
		"-unix /run/gitblk/a.sock -N tar " + first + " -readonly -timeout 30",
		"-unix /run/gitblk/b.sock -N fat " + second + " -readonly -timeout 30",
	})
	wantCalls(t, "modprobe", e.calls("modprobe"), []string{"nbd"})
	if v, _ := e.xenstore("backend/vbd/6/51728/physical-device"); v != "2b:20" {
		t.Errorf("second guest physical-device %q, want 2b:20", v)
	}
}

// TestHotplugRefuses: a writable disk, a bad target or option, a failing
// nbd-client and no free device each end in hotplug-status=error with a hotplug-error
// message, exit status 1, and no device left attached.
func TestHotplugRefuses(t *testing.T) {
	bk := hotplugBackend + "/"
	for _, tc := range []struct {
		name, target, mode string
		nbds               int
		nbdFail            bool
		wantErr            string
		wantClientCalls    int
	}{
		{"writable", "unix:/run/gitblk/site.sock:tar", "w", 3, false, "read-only", 0},
		{"no export separator", "site", "r", 3, false, "not unix:SOCKET:EXPORT", 0},
		{"bad port", "localhost:http:tar", "r", 3, false, "not a number", 0},
		// The client's own message reaches hotplug-error, and the device
		// is detached (the second call, nbd-client -d).
		{"nbd-client fails", "unix:/run/gitblk/site.sock:tar", "r", 3, true, "Connection refused", 2},
		{"unknown option", "tsl=/etc/gitblk/tls,unix:/run/gitblk/site.sock:tar", "r", 3, false, "unknown option 'tsl'", 0},
		{"missing TLS file", "tls=/nonexistent/tls,unix:/run/gitblk/site.sock:tar", "r", 3, false, "cannot read TLS file /nonexistent/tls/client-cert.pem", 0},
		{"bad io timeout", "timeout=soon,unix:/run/gitblk/site.sock:tar", "r", 3, false, "not a number of seconds", 0},
		{"all devices busy", "unix:/run/gitblk/site.sock:tar", "r", 1, false, "no free", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newHotplugEnv(t, tc.nbds, map[string]string{bk + "params": tc.target, bk + "mode": tc.mode})
			if tc.nbdFail {
				e.extra = []string{"STUB_NBD_FAIL=1"}
			}
			out, err := e.run("add")
			var exit *exec.ExitError
			if err == nil || !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("add: %v, want exit status 1\n%s", err, out)
			}
			if v, _ := e.xenstore(bk + "hotplug-status"); v != "error" {
				t.Errorf("hotplug-status %q, want error", v)
			}
			if v, _ := e.xenstore(bk + "hotplug-error"); !strings.Contains(v, tc.wantErr) {
				t.Errorf("hotplug-error %q, want it to mention %q", v, tc.wantErr)
			}
			if _, ok := e.xenstore(bk + "physical-device"); ok {
				t.Error("physical-device written for a failed add")
			}
			if n := len(e.calls("nbd-client")); n != tc.wantClientCalls {
				t.Errorf("%d nbd-client calls, want %d: %q", n, tc.wantClientCalls, e.calls("nbd-client"))
			}
		})
	}
}

// TestSystemdUnit checks contrib/systemd/gitblk@.service with systemd's own
// tools: `systemd-analyze verify` accepts it without a warning (with the
// binary path pointed at the test build), and `systemd-analyze security`
// rates its exposure at most maxExposure.
func TestSystemdUnit(t *testing.T) {
	// maxExposure is systemd-analyze's threshold: exposure level times ten.
	const maxExposure = "20"
	analyze := testutil.NeedTool(t, "systemd-analyze", "systemd")
	unit, err := os.ReadFile("../contrib/systemd/gitblk@.service")
	if err != nil {
		t.Fatal(err)
	}
	const installedBin = "/usr/local/bin/gitblk"
	if !strings.Contains(string(unit), "ExecStart="+installedBin+" serve ") {
		t.Fatalf("the unit's ExecStart does not run %s serve", installedBin)
	}
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "gitblk@.service"), strings.ReplaceAll(string(unit), installedBin, gitblkBin))

	cmd := exec.Command(analyze, "verify", "--man=no", "./gitblk@site.service")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	cmd = exec.Command(analyze, "security", "--offline=yes", "--threshold="+maxExposure, "./gitblk@site.service")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: %v (exposure above %s/10?)\n%s", err, maxExposure, out)
	}
	if i := strings.Index(string(out), "Overall exposure level"); i >= 0 {
		t.Logf("%s", strings.TrimSpace(string(out[i:])))
	}
}
