package nbd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// Tests with NBD clients nobody here wrote: libnbd's nbdinfo and nbdcopy,
// qemu-img and qemu-io.

func TestNbdinfoJSON(t *testing.T) {
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	ts := startServer(t, nil)
	for _, uri := range []string{ts.tcpURI(""), ts.unixURI("big")} {
		var info struct {
			Protocol   string `json:"protocol"`
			Structured bool   `json:"structured"`
			Exports    []struct {
				Name        string   `json:"export-name"`
				Description string   `json:"description"`
				ReadOnly    bool     `json:"is_read_only"`
				MultiConn   bool     `json:"can_multi_conn"`
				CanTrim     bool     `json:"can_trim"`
				CanZero     bool     `json:"can_zero"`
				Size        int64    `json:"export-size"`
				Contexts    []string `json:"contexts"`
				MinBlock    int64    `json:"block_size_minimum"`
				PrefBlock   int64    `json:"block_size_preferred"`
				MaxBlock    int64    `json:"block_size_maximum"`
			} `json:"exports"`
		}
		out := runTool(t, "nbdinfo", "--json", uri)
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("nbdinfo --json %s: %v\n%s", uri, err, out)
		}
		if info.Protocol != "newstyle-fixed" || !info.Structured || len(info.Exports) != 1 {
			t.Fatalf("nbdinfo --json %s: %+v", uri, info)
		}
		e := info.Exports[0]
		want := int64(smallSize)
		if strings.Contains(uri, "big") {
			want = bigSize
		}
		if !e.ReadOnly || !e.MultiConn || e.CanTrim || e.CanZero || e.Size != want ||
			e.Description != testDescription || len(e.Contexts) != 1 || e.Contexts[0] != "base:allocation" ||
			e.MinBlock != 1 || e.PrefBlock != 4096 || e.MaxBlock != 32<<20 {
			t.Errorf("nbdinfo --json %s: %+v", uri, e)
		}
	}
	for _, probe := range [][]string{{"--is", "read-only"}, {"--can", "multi-conn"}} {
		runTool(t, "nbdinfo", append(probe, ts.unixURI(""))...) // exit status 0 means true
	}
}

func TestNbdinfoList(t *testing.T) {
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	ts := startServer(t, nil)
	var list struct {
		Exports []struct {
			Name string `json:"export-name"`
			Size int64  `json:"export-size"`
		} `json:"exports"`
	}
	out := runTool(t, "nbdinfo", "--list", "--json", ts.tcpURI(""))
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("nbdinfo --list --json: %v\n%s", err, out)
	}
	var got []string
	for _, e := range list.Exports {
		got = append(got, e.Name)
		if img, _ := ts.image(e.Name); img == nil || img.Size() != e.Size {
			t.Errorf("export %q: size %d", e.Name, e.Size)
		}
	}
	if strings.Join(got, ",") != strings.Join(testExportNames, ",") {
		t.Errorf("nbdinfo --list: exports %q, want %q", got, testExportNames)
	}
}

// expectedMap lists an image's runs as nbdinfo --map prints them, as the
// server reports them: a 512-byte sector is a hole only when all of it lies
// in one zero run (qemu-img convert takes a partly zero sector as zero).
func expectedMap(m *memImage) string {
	const sector = 512
	var b strings.Builder
	size := m.Size()
	start, startZero := int64(0), false
	for off := int64(0); off < size; off += sector {
		n, zero := m.ExtentAt(off)
		zero = zero && n >= sector
		if off > 0 && zero != startZero {
			writeMapLine(&b, start, off-start, startZero)
			start = off
		}
		startZero = zero
	}
	writeMapLine(&b, start, size-start, startZero)
	return b.String()
}

func writeMapLine(b *strings.Builder, off, n int64, zero bool) {
	typ, desc := 0, "data"
	if zero {
		typ, desc = 3, "hole,zero"
	}
	fmt.Fprintf(b, "%d %d %d %s\n", off, n, typ, desc)
}

func TestNbdinfoMap(t *testing.T) {
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	ts := startServer(t, nil)
	for name, want := range map[string]string{
		"":      expectedMap(smallImage()),
		"plain": fmt.Sprintf("0 %d 0 data\n", smallSize),
	} {
		out := runTool(t, "nbdinfo", "--map", ts.unixURI(name))
		var got strings.Builder
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			got.WriteString(strings.Join(strings.Fields(line), " ") + "\n")
		}
		if got.String() != want {
			t.Errorf("nbdinfo --map %q:\n%s\nwant:\n%s", name, got.String(), want)
		}
	}
}

func TestNbdcopyMultiConn(t *testing.T) {
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	ts := startServer(t, nil)
	dir := t.TempDir()
	for i, uri := range []string{ts.tcpURI(""), ts.unixURI("plain")} {
		out := filepath.Join(dir, fmt.Sprintf("copy%d.img", i))
		runTool(t, "nbdcopy", "--connections=4", "--threads=4", uri, out)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, smallImage().data) {
			t.Errorf("nbdcopy %s: copy differs from the image (%d bytes, want %d)", uri, len(got), smallSize)
		}
	}
	logs := ts.log.String()
	if n := strings.Count(logs, `export="" description=`); n < 4 {
		t.Errorf("expected at least 4 connections to the default export, log:\n%s", logs)
	}
}

// TestNbdcopyBig streams an 80 MiB export through nbdcopy to stdout and
// checks every byte against the generator.
func TestNbdcopyBig(t *testing.T) {
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	ts := startServer(t, nil)
	cmd := exec.Command("nbdcopy", "--connections=2", ts.unixURI("big"), "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(stdout, 1<<20)
	var off int64
	bad := int64(-1)
	buf := make([]byte, 1<<16)
	for {
		n, err := r.Read(buf)
		for i := 0; i < n; i++ {
			if bad < 0 && buf[i] != genByte(off+int64(i)) {
				bad = off + int64(i)
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("nbdcopy: %v\n%s", err, stderr.String())
	}
	if off != bigSize || bad >= 0 {
		t.Errorf("nbdcopy big: %d bytes (want %d), first difference at %d", off, bigSize, bad)
	}
}

// TestQemuImgConvert copies an image whose zero runs start and end inside
// 512-byte sectors with qemu-img convert, which reads by block status in
// sectors: every byte must arrive.
func TestQemuImgConvert(t *testing.T) {
	testutil.NeedTool(t, "qemu-img", "qemu-utils")
	odd := newMemImage(1<<20, 7, []run{{0x1100, 0x3000}, {0x8000, 0x300}, {0x10000 - 0x80, 0x4080}, {1<<20 - 0x1123, 0x1123}})
	ts := startServer(t, func(s *Server) {
		resolve := s.Resolve
		s.Resolve = func(ctx context.Context, name string, peer Peer) (*Export, error) {
			if name == "odd" {
				return &Export{Image: odd}, nil
			}
			return resolve(ctx, name, peer)
		}
	})
	for _, c := range []struct {
		uri  string
		want []byte
	}{{ts.unixURI("odd"), odd.data}, {ts.tcpURI(""), smallImage().data}} {
		out := filepath.Join(t.TempDir(), "copy.img")
		runTool(t, "qemu-img", "convert", "-f", "raw", c.uri, "-O", "raw", out)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("qemu-img convert %s: %d bytes, first difference at %#x", c.uri, len(got), firstDiff(got, c.want))
		}
	}
}

func TestQemuImgCompare(t *testing.T) {
	testutil.NeedTool(t, "qemu-img", "qemu-utils")
	ts := startServer(t, nil)
	file := filepath.Join(t.TempDir(), "small.img")
	if err := os.WriteFile(file, smallImage().data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{ts.tcpURI(""), ts.unixURI("plain")} {
		runTool(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", file, uri)
	}
	// The comparison must be able to fail: flip one byte of the file.
	data := bytes.Clone(smallImage().data)
	data[3<<20+17] ^= 0x40
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "raw", file, ts.tcpURI(""))
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("qemu-img compare of a different file: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Content mismatch at offset") {
		t.Errorf("qemu-img compare did not name the differing offset:\n%s", out)
	}
}

// parseQemuIoDump decodes the hex dump of qemu-io's `read -v`.
func parseQemuIoDump(t *testing.T, out string, off, n int64) []byte {
	t.Helper()
	var got []byte
	for _, line := range strings.Split(out, "\n") {
		addr, rest, ok := strings.Cut(line, ":  ")
		if !ok || len(addr) != 8 {
			continue
		}
		a, err := strconv.ParseInt(addr, 16, 64)
		if err != nil || a != off+int64(len(got)) {
			continue
		}
		k := min(16, int(n)-len(got))
		fields := strings.Fields(rest)
		if len(fields) < k {
			t.Fatalf("short dump line %q", line)
		}
		b, err := hex.DecodeString(strings.Join(fields[:k], ""))
		if err != nil {
			t.Fatalf("dump line %q: %v", line, err)
		}
		got = append(got, b...)
	}
	return got
}

func TestQemuIoOddOffsets(t *testing.T) {
	testutil.NeedTool(t, "qemu-io", "qemu-utils")
	ts := startServer(t, nil)
	reads := [][2]int64{
		{12345, 40},
		{0x10000 - 3, 35},        // data into a hole
		{0x5100 - 1, 514},        // across the 512-byte zero run
		{smallSize - 7, 7},       // the last bytes
		{1<<20 + 4093, 4099},     // across block boundaries
		{0x40000 - 17, 17 + 101}, // hole into data
	}
	for _, uri := range []string{ts.tcpURI(""), ts.unixURI("plain")} {
		args := []string{"-r", "-f", "raw"}
		for _, r := range reads {
			args = append(args, "-c", fmt.Sprintf("read -v %d %d", r[0], r[1]))
		}
		out := runTool(t, "qemu-io", append(args, uri)...)
		for _, r := range reads {
			got := parseQemuIoDump(t, out, r[0], r[1])
			if want := smallImage().data[r[0] : r[0]+r[1]]; !bytes.Equal(got, want) {
				t.Errorf("qemu-io %s read %d %d:\ngot  %x\nwant %x", uri, r[0], r[1], got, want)
			}
		}
	}
}

func TestQemuNbdList(t *testing.T) {
	testutil.NeedTool(t, "qemu-nbd", "qemu-utils")
	ts := startServer(t, nil)
	out := runTool(t, "qemu-nbd", "-L", "-k", ts.sock)
	if !strings.Contains(out, fmt.Sprintf("exports available: %d", len(testExportNames))) {
		t.Fatalf("qemu-nbd -L:\n%s", out)
	}
	for _, name := range testExportNames {
		img, _ := ts.image(name)
		want := fmt.Sprintf("export: '%s'\n  size:  %d\n  flags: 0x587 ( readonly flush df multi cache )", name, img.Size())
		if !strings.Contains(out, want) {
			t.Errorf("qemu-nbd -L lacks %q:\n%s", want, out)
		}
	}
}
