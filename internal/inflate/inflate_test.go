package inflate

import (
	"bytes"
	"compress/zlib"
	"errors"
	"io"
	"math/rand"
	"runtime"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// dlSupported says whether this system tries the C libraries.
const dlSupported = runtime.GOOS == "linux" && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64")

// inflaters are every inflater of this system, by kind. Where the C
// libraries are tried, both must load: zlib1g and libdeflate0 are
// installed wherever gitblk is tested.
func inflaters(t testing.TB) map[string]*Inflater {
	t.Helper()
	m := map[string]*Inflater{KindGo: Go()}
	if !dlSupported {
		return m
	}
	for _, kind := range []string{KindZlib, KindLibdeflate} {
		f, err := Load(kind)
		if err != nil {
			t.Fatalf("Load(%s): %v (Debian packages zlib1g and libdeflate0)", kind, err)
		}
		m[kind] = f
	}
	return m
}

func deflated(t testing.TB, data []byte, level int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := zlib.NewWriterLevel(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// oneByteReader returns its input one byte per Read, and then some empty
// reads, to exercise the inflater's input refills.
type oneByteReader struct {
	b     []byte
	empty bool
}

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.empty = !r.empty; r.empty {
		return 0, nil
	}
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestLibrariesLoad(t *testing.T) {
	want := map[string]string{KindGo: "go compress/zlib"}
	if dlSupported {
		want[KindZlib] = "zlib (dlopen)"
		want[KindLibdeflate] = "libdeflate+zlib (dlopen)"
	}
	got := inflaters(t)
	if len(got) != len(want) {
		t.Fatalf("inflaters %v, want %v", got, want)
	}
	for kind, f := range got {
		if f.Name() != want[kind] {
			t.Errorf("%s: Name %q, want %q", kind, f.Name(), want[kind])
		}
	}
	if _, err := Load("gzip"); err == nil {
		t.Error("Load(gzip) succeeded")
	}
}

func TestInflatesLikeCompressZlib(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	random := make([]byte, 300<<10)
	rng.Read(random)
	text := bytes.Repeat([]byte("package inflate // inflating git objects\n"), 9000)
	cases := map[string][]byte{"empty": {}, "one": {'x'}, "random": random, "text": text}
	for kind, f := range inflaters(t) {
		for name, data := range cases {
			for _, level := range []int{zlib.NoCompression, zlib.BestSpeed, zlib.BestCompression} {
				z := deflated(t, data, level)
				for _, bufSize := range []int{1, 512, 64 << 10} {
					zr, err := f.NewReader(bytes.NewReader(z), bufSize)
					if err != nil {
						t.Fatalf("%s/%s/%d/%d: %v", kind, name, level, bufSize, err)
					}
					got, err := io.ReadAll(zr)
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("%s/%s/level %d/buf %d: got %d bytes, %v; want %d bytes", kind, name, level, bufSize, len(got), err, len(data))
					}
					// Reset reuses the reader for another stream.
					if err := zr.Reset(&oneByteReader{b: deflated(t, text[:1000], level)}); err != nil {
						t.Fatalf("%s: Reset: %v", kind, err)
					}
					got, err = io.ReadAll(zr)
					if err != nil || !bytes.Equal(got, text[:1000]) {
						t.Fatalf("%s: after Reset: got %d bytes, %v", kind, len(got), err)
					}
					if err := zr.Close(); err != nil {
						t.Fatal(err)
					}
				}
				dst := make([]byte, len(data))
				if n, err := f.Whole(dst, z); err != nil || n != len(z) || !bytes.Equal(dst, data) {
					t.Fatalf("%s/%s/level %d: Whole took %d of %d bytes, %v", kind, name, level, n, len(z), err)
				}
			}
		}
	}
}

// The stream's end is found without reading past it: what follows in the
// source (the next pack entry) is left alone, and reading on gives io.EOF.
func TestStopsAtStreamEnd(t *testing.T) {
	z := deflated(t, []byte("hello, blob"), zlib.DefaultCompression)
	src := append(append([]byte{}, z...), []byte("NEXT PACK ENTRY")...)
	for kind, f := range inflaters(t) {
		zr, err := f.NewReader(bytes.NewReader(src), 4096)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || string(got) != "hello, blob" {
			t.Fatalf("%s: %q, %v", kind, got, err)
		}
		if n, err := zr.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Fatalf("%s: read after the end: %d, %v", kind, n, err)
		}
		_ = zr.Close()
	}
}

func TestDamagedStreams(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	z := deflated(t, data, zlib.BestSpeed)
	badSum := append([]byte{}, z...)
	badSum[len(badSum)-1] ^= 0xff
	badData := append([]byte{}, z...)
	for i := 10; i < 40; i++ {
		badData[i] ^= 0x55
	}
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"truncated", z[:len(z)/2], io.ErrUnexpectedEOF},
		{"no checksum", z[:len(z)-4], io.ErrUnexpectedEOF},
		{"bad checksum", badSum, ErrData},
		{"bad data", badData, ErrData},
		{"bad header", append([]byte{0x78, 0x00}, z[2:]...), ErrData},
		{"preset dictionary", []byte{0x78, 0xbb, 0x12, 0x34, 0x56, 0x78, 3, 0, 0, 0, 0, 1}, ErrData},
		{"nothing", nil, nil}, // any error
	}
	for kind, f := range inflaters(t) {
		for _, tc := range cases {
			zr, err := f.NewReader(bytes.NewReader(tc.in), 512)
			if err == nil {
				_, err = io.ReadAll(zr)
				_ = zr.Close()
			}
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("%s/%s: error %v, want %v", kind, tc.name, err, tc.want)
			}
		}
	}
}

// A closed Reader says so, and Close twice is fine.
func TestReaderClosed(t *testing.T) {
	z := deflated(t, []byte("closed"), zlib.BestSpeed)
	for kind, f := range inflaters(t) {
		zr, err := f.NewReader(bytes.NewReader(z), 64)
		if err != nil {
			t.Fatal(err)
		}
		if err := zr.Close(); err != nil {
			t.Fatal(err)
		}
		if err := zr.Close(); err != nil {
			t.Errorf("%s: second Close: %v", kind, err)
		}
		if kind == KindGo {
			continue // compress/zlib's reader has nothing to release
		}
		if _, err := zr.Read(make([]byte, 10)); err == nil {
			t.Errorf("%s: Read after Close succeeded", kind)
		}
		if err := zr.Reset(bytes.NewReader(z)); err == nil {
			t.Errorf("%s: Reset after Close succeeded", kind)
		}
	}
}

// A failing source is the Reader's error, not a damaged stream.
func TestSourceError(t *testing.T) {
	boom := errors.New("disk on fire")
	z := deflated(t, bytes.Repeat([]byte("abc"), 1000), zlib.BestSpeed)
	for kind, f := range inflaters(t) {
		zr, err := f.NewReader(io.MultiReader(bytes.NewReader(z[:20]), errReader{boom}), 16)
		if err == nil {
			_, err = io.ReadAll(zr)
			_ = zr.Close()
		}
		if !errors.Is(err, boom) || errors.Is(err, ErrData) {
			t.Errorf("%s: %v, want %v", kind, err, boom)
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestWhole(t *testing.T) {
	data := bytes.Repeat([]byte("whole blobs inflate at once\n"), 3000)
	z := deflated(t, data, zlib.DefaultCompression)
	badSum := append([]byte{}, z...)
	badSum[len(badSum)-2] ^= 1
	for kind, f := range inflaters(t) {
		dst := make([]byte, len(data))
		// Trailing bytes (the next pack entry) are left alone.
		n, err := f.Whole(dst, append(append([]byte{}, z...), "NEXT"...))
		if err != nil || n != len(z) || !bytes.Equal(dst, data) {
			t.Fatalf("%s: took %d of %d bytes, %v", kind, n, len(z), err)
		}
		empty := deflated(t, nil, zlib.BestSpeed)
		if n, err := f.Whole(nil, empty); err != nil || n != len(empty) {
			t.Errorf("%s: empty blob: %d, %v", kind, n, err)
		}
		padded := testutil.PaddedZlib([]byte("padded"), 1000)
		if n, err := f.Whole(make([]byte, 6), padded); err != nil || n != len(padded) {
			t.Errorf("%s: padded stream: %d of %d, %v", kind, n, len(padded), err)
		}
		for _, tc := range []struct {
			name string
			dst  []byte
			src  []byte
		}{
			{"dst too small", make([]byte, len(data)-1), z},
			{"dst too big", make([]byte, len(data)+1), z},
			{"dst empty", nil, z},
			{"cut short", dst, z[:len(z)-10]},
			{"no checksum", dst, z[:len(z)-4]},
			{"bad checksum", dst, badSum},
			{"nothing", dst, nil},
			{"empty stream, dst too big", make([]byte, 1), empty},
		} {
			if _, err := f.Whole(tc.dst, tc.src); !errors.Is(err, ErrData) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%s/%s: %v, want ErrData", kind, tc.name, err)
			}
		}
	}
}

func TestPoolReuses(t *testing.T) {
	for kind, f := range inflaters(t) {
		p := f.NewPool(512)
		if p.BufSize() != 512 {
			t.Fatalf("BufSize %d", p.BufSize())
		}
		for i := 0; i < 3*PoolMax; i++ {
			want := bytes.Repeat([]byte{byte(i)}, i*100)
			zr, err := p.Get(bytes.NewReader(deflated(t, want, zlib.BestSpeed)))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: stream %d: %d bytes, %v", kind, i, len(got), err)
			}
			p.Put(zr)
		}
		// A reader left in an error state is fine after the next Get.
		zr, err := p.Get(bytes.NewReader([]byte{0x78, 0x9c, 1, 2}))
		if err == nil {
			_, err = io.ReadAll(zr)
			p.Put(zr)
		}
		if err == nil {
			t.Fatalf("%s: damaged stream read without error", kind)
		}
		zr, err = p.Get(bytes.NewReader(deflated(t, []byte("again"), zlib.BestSpeed)))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(zr); err != nil || string(got) != "again" {
			t.Fatalf("%s: after a damaged stream: %q, %v", kind, got, err)
		}
		p.Put(zr)
		// More Readers than the pool keeps: the extra ones are closed.
		var out []Reader
		for i := 0; i < PoolMax+4; i++ {
			zr, err := p.Get(bytes.NewReader(deflated(t, []byte("x"), zlib.BestSpeed)))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, zr)
		}
		for _, zr := range out {
			p.Put(zr)
		}
	}
}

// FuzzInflate: on any input every inflater agrees with compress/zlib: the
// same bytes when it succeeds, an error when it fails, and never a crash
// (the C ones read input a client's repository holds).
func FuzzInflate(f *testing.F) {
	text := bytes.Repeat([]byte("fuzz the inflaters "), 200)
	for _, level := range []int{zlib.NoCompression, zlib.BestSpeed, zlib.BestCompression} {
		z := deflated(f, text, level)
		f.Add(z)
		f.Add(z[:len(z)/2])
		f.Add(append(z, "trailing"...))
	}
	f.Add(testutil.PaddedZlib([]byte("padded"), 3))
	f.Add([]byte{0x78, 0x9c})
	f.Add([]byte{0x78, 0xbb, 0x12, 0x34, 0x56, 0x78, 3, 0, 0, 0, 0, 1})
	f.Add([]byte{0x78, 0xbb, 0, 0, 0, 1, 3, 0, 0, 0, 0, 1}) // the empty dictionary's id
	impls := inflaters(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		zr, err := zlib.NewReader(bytes.NewReader(in))
		var want []byte
		if err == nil {
			want, err = io.ReadAll(zr)
		}
		wantOK := err == nil
		// A stream that needs a preset dictionary (FDICT, RFC 1950
		// section 2.2; git never writes one) fails with zlib; compress/zlib
		// reads one whose dictionary id is the empty dictionary's. Either
		// is fine, as long as a success gives compress/zlib's bytes.
		mayFail := len(in) > 1 && in[1]&0x20 != 0

		for kind, inf := range impls {
			z, err := inf.NewReader(&oneByteReader{b: in}, 7)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(z)
				z.Close()
			}
			if wantOK && (err != nil && !mayFail || err == nil && !bytes.Equal(got, want)) {
				t.Fatalf("%s stream: %d bytes, %v; compress/zlib: %d bytes", kind, len(got), err, len(want))
			}
			if !wantOK && err == nil {
				t.Fatalf("%s stream: read %d bytes of a stream compress/zlib refuses", kind, len(got))
			}

			sizes := []int{len(want), len(want) + 1, max(len(want)-1, 0)}
			if !wantOK {
				sizes = []int{len(in) * 2, len(in) / 2, 0} // any size: it must fail
			}
			for i, size := range sizes {
				dst := make([]byte, size)
				_, err := inf.Whole(dst, in)
				ok := wantOK && i == 0
				if len(want) == 0 && wantOK && i == 2 {
					ok = true // the same size again
				}
				if ok && (err != nil && !mayFail || err == nil && !bytes.Equal(dst, want)) {
					t.Fatalf("%s whole: %v", kind, err)
				}
				if !ok && err == nil {
					t.Fatalf("%s whole into %d bytes: no error (compress/zlib: %d bytes, ok %v)", kind, size, len(want), wantOK)
				}
			}
		}
	})
}
