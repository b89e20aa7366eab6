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

// TestChooseWithoutLibraries: with no library loaded, every choice is
// compress/zlib, and the error says why when a library was wanted.
func TestChooseWithoutLibraries(t *testing.T) {
	missing := errors.New("no such library")
	l := libs{zlibErr: missing, libdeflateErr: missing}
	for _, want := range []string{"", KindZlib, KindLibdeflate, "bogus"} {
		f, err := choose(want, l)
		if f != Go() || !errors.Is(err, missing) {
			t.Errorf("%s=%q: %s, %v", EnvVar, want, f.Name(), err)
		}
	}
	if f, err := choose(KindGo, l); f != Go() || err != nil {
		t.Errorf("%s=go: %s, %v", EnvVar, f.Name(), err)
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
