package inflate

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// TestFallback: a library that does not load is passed over, and the
// error says which; the inflater still inflates.
func TestFallback(t *testing.T) {
	if !dlSupported {
		t.Skip("the C libraries are not tried on this system")
	}
	const missing = "libgitblk-missing.so.0"
	cases := []struct {
		name                  string
		libc, zlib, deflate   string
		want                  string
		wantErr               string // in the error; "" for none
		wantForced, forcedErr string // with GITBLK_INFLATE=libdeflate
	}{
		{"all there", libcName, zlibName, libdeflateName, "libdeflate+zlib (dlopen)", "", "libdeflate+zlib (dlopen)", ""},
		{"no libdeflate", libcName, zlibName, missing, "zlib (dlopen)", missing, "zlib (dlopen)", missing},
		{"no zlib", libcName, missing, libdeflateName, "libdeflate+go compress/zlib (dlopen)", missing, "libdeflate+go compress/zlib (dlopen)", missing},
		{"neither", libcName, missing, missing, "go compress/zlib", missing, "go compress/zlib", missing},
		{"no libc", missing, zlibName, libdeflateName, "go compress/zlib", missing, "go compress/zlib", missing},
		// A library without the symbols wanted (libc has no inflate).
		{"not zlib", libcName, libcName, libcName, "go compress/zlib", "undefined symbol: zlibVersion", "go compress/zlib", "undefined symbol: libdeflate_alloc_decompressor"},
	}
	data := bytes.Repeat([]byte("fall back\n"), 500)
	z := deflated(t, data, zlib.BestSpeed)
	for _, tc := range cases {
		l := loadLibs(tc.libc, tc.zlib, tc.deflate)
		for _, want := range []struct{ env, name, err string }{{"", tc.want, tc.wantErr}, {KindLibdeflate, tc.wantForced, tc.forcedErr}} {
			f, err := choose(want.env, l)
			if f.Name() != want.name {
				t.Errorf("%s, %s=%q: %s, want %s", tc.name, EnvVar, want.env, f.Name(), want.name)
			}
			if want.err == "" && err != nil || want.err != "" && (err == nil || !strings.Contains(err.Error(), want.err)) {
				t.Errorf("%s, %s=%q: error %v, want one naming %q", tc.name, EnvVar, want.env, err, want.err)
			}
			dst := make([]byte, len(data))
			if _, err := f.Whole(dst, z); err != nil || !bytes.Equal(dst, data) {
				t.Errorf("%s: Whole: %v", f.Name(), err)
			}
			zr, err := f.NewReader(bytes.NewReader(z), 512)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s: stream: %d bytes, %v", f.Name(), len(got), err)
			}
			_ = zr.Close()
		}
		// Forcing zlib or go.
		f, err := choose(KindZlib, l)
		if l.zlib != nil && (f.Name() != "zlib (dlopen)" || err != nil) || l.zlib == nil && (f != Go() || err == nil) {
			t.Errorf("%s, %s=zlib: %s, %v", tc.name, EnvVar, f.Name(), err)
		}
		if f, err := choose(KindGo, l); f != Go() || err != nil {
			t.Errorf("%s, %s=go: %s, %v", tc.name, EnvVar, f.Name(), err)
		}
	}
	// An unknown value is the best there is, with a note.
	f, err := choose("fast", loadLibs(libcName, zlibName, libdeflateName))
	if f.Name() != "libdeflate+zlib (dlopen)" || err == nil || !strings.Contains(err.Error(), `"fast"`) {
		t.Errorf("%s=fast: %s, %v", EnvVar, f.Name(), err)
	}
}

// TestDefaultFromEnv runs this test binary with each GITBLK_INFLATE value
// and checks the inflater it reports.
func TestDefaultFromEnv(t *testing.T) {
	if os.Getenv("INFLATE_TEST_CHILD") == "1" {
		return
	}
	want := map[string]string{
		"":           "libdeflate+zlib (dlopen)",
		"go":         "go compress/zlib",
		"zlib":       "zlib (dlopen)",
		"libdeflate": "libdeflate+zlib (dlopen)",
		"bogus":      "libdeflate+zlib (dlopen), error: inflate: GITBLK_INFLATE=\"bogus\" is none of go, zlib, libdeflate",
	}
	if !dlSupported {
		for k := range want {
			want[k] = "go compress/zlib"
		}
	}
	for env, name := range want {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPrintDefault$", "-test.v")
		cmd.Env = append(os.Environ(), "INFLATE_TEST_CHILD=1", EnvVar+"="+env)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s=%s: %v\n%s", EnvVar, env, err, out)
		}
		if !strings.Contains(string(out), "inflater: "+name+"\n") {
			t.Errorf("%s=%s: want inflater %q, got\n%s", EnvVar, env, name, out)
		}
	}
}

// TestPrintDefault prints the default inflater (for TestDefaultFromEnv).
func TestPrintDefault(t *testing.T) {
	if os.Getenv("INFLATE_TEST_CHILD") != "1" {
		t.Skip("run by TestDefaultFromEnv")
	}
	msg := Name()
	if !dlSupported {
		if !errors.Is(DefaultError(), DefaultError()) || DefaultError() == nil {
			t.Error("no error where the libraries are not tried")
		}
	} else if err := DefaultError(); err != nil {
		msg += ", error: " + err.Error()
	}
	fmt.Printf("inflater: %s\n", msg)
	// The package-level functions use it.
	data := []byte("default")
	z := deflated(t, data, zlib.BestSpeed)
	dst := make([]byte, len(data))
	if _, err := Whole(dst, z); err != nil || !bytes.Equal(dst, data) {
		t.Fatalf("Whole: %v", err)
	}
	zr, err := NewPool(64).Get(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("pool: %q, %v", got, err)
	}
	zr, err = NewReader(bytes.NewReader(z), 64)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("NewReader: %q, %v", got, err)
	}
}

// TestConcurrent inflates from many goroutines at once through shared
// pools (run with -race).
func TestConcurrent(t *testing.T) {
	data := bytes.Repeat([]byte("concurrent readers "), 5000)
	z := deflated(t, data, zlib.DefaultCompression)
	for kind, f := range inflaters(t) {
		p := f.NewPool(4096)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					dst := make([]byte, len(data))
					if _, err := f.Whole(dst, z); err != nil || !bytes.Equal(dst, data) {
						errs <- fmt.Errorf("%s: Whole: %v", kind, err)
						return
					}
					zr, err := p.Get(bytes.NewReader(z))
					if err != nil {
						errs <- err
						return
					}
					got, err := io.ReadAll(zr)
					p.Put(zr)
					if err != nil || !bytes.Equal(got, data) {
						errs <- fmt.Errorf("%s: stream: %v", kind, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}
