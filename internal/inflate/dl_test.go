//go:build linux && (amd64 || arm64)

package inflate

import (
	"bytes"
	"compress/zlib"
	"io"
	"strings"
	"testing"
)

// TestFallback: a library that does not load is passed over, and the
// error says which; the inflater still inflates.
func TestFallback(t *testing.T) {
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

// TestSelfTestStream: the libraries' self-test stream inflates with
// compress/zlib to its text, so that the self-test checks them against
// Go's own zlib.
func TestSelfTestStream(t *testing.T) {
	r, err := zlib.NewReader(bytes.NewReader(selfTestStream))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, selfTestText()) {
		t.Errorf("compress/zlib inflates selfTestStream to %d bytes, %v", len(got), err)
	}
	if err := selfTest(Go()); err != nil {
		t.Errorf("compress/zlib fails the self-test: %v", err)
	}
}
