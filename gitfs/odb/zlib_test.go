package odb

import (
	"bytes"
	"compress/zlib"
	"errors"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// zlibImpls are the inflaters of this build: the one in use and
// compress/zlib (the same one in a build without cgo).
var zlibImpls = map[string]func(io.Reader, int) (zlibReader, error){
	"build": newZlibReader,
	"go":    newGoZlib,
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

func TestZlibInflatesLikeCompressZlib(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	random := make([]byte, 300<<10)
	rng.Read(random)
	text := bytes.Repeat([]byte("package gitfs // inflating git objects\n"), 9000)
	cases := map[string][]byte{"empty": {}, "one": {'x'}, "random": random, "text": text}
	for implName, newZ := range zlibImpls {
		for name, data := range cases {
			for _, level := range []int{zlib.NoCompression, zlib.BestSpeed, zlib.BestCompression} {
				z := deflated(t, data, level)
				for _, bufSize := range []int{1, 512, 64 << 10} {
					zr, err := newZ(bytes.NewReader(z), bufSize)
					if err != nil {
						t.Fatalf("%s/%s/%d/%d: %v", implName, name, level, bufSize, err)
					}
					got, err := io.ReadAll(zr)
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("%s/%s/level %d/buf %d: got %d bytes, %v; want %d bytes", implName, name, level, bufSize, len(got), err, len(data))
					}
					// Reset reuses the reader for another stream.
					if err := zr.Reset(&oneByteReader{b: deflated(t, text[:1000], level)}); err != nil {
						t.Fatalf("%s: Reset: %v", implName, err)
					}
					got, err = io.ReadAll(zr)
					if err != nil || !bytes.Equal(got, text[:1000]) {
						t.Fatalf("%s: after Reset: got %d bytes, %v", implName, len(got), err)
					}
					if err := zr.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

// The stream's end is found without reading past it: what follows in the
// source (the next pack entry) is left alone, and reading on gives io.EOF.
func TestZlibStopsAtStreamEnd(t *testing.T) {
	z := deflated(t, []byte("hello, blob"), zlib.DefaultCompression)
	src := append(append([]byte{}, z...), []byte("NEXT PACK ENTRY")...)
	for implName, newZ := range zlibImpls {
		zr, err := newZ(bytes.NewReader(src), 4096)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || string(got) != "hello, blob" {
			t.Fatalf("%s: %q, %v", implName, got, err)
		}
		if n, err := zr.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Fatalf("%s: read after the end: %d, %v", implName, n, err)
		}
		_ = zr.Close()
	}
}

func TestZlibDamagedStreams(t *testing.T) {
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
		{"bad checksum", badSum, errZlibData},
		{"bad data", badData, errZlibData},
		{"bad header", append([]byte{0x78, 0x00}, z[2:]...), errZlibData},
		{"nothing", nil, nil}, // any error
	}
	for implName, newZ := range zlibImpls {
		for _, tc := range cases {
			zr, err := newZ(bytes.NewReader(tc.in), 512)
			if err == nil {
				_, err = io.ReadAll(zr)
				_ = zr.Close()
			}
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("%s/%s: error %v, want %v", implName, tc.name, err, tc.want)
			}
		}
	}
}

// wholeImpls are the whole-buffer inflaters of this build.
var wholeImpls = map[string]func(dst, src []byte) (int, error){
	"build": inflateWhole,
	"go":    inflateGo,
}

func TestInflateWhole(t *testing.T) {
	data := bytes.Repeat([]byte("whole blobs inflate at once\n"), 3000)
	z := deflated(t, data, zlib.DefaultCompression)
	badSum := append([]byte{}, z...)
	badSum[len(badSum)-2] ^= 1
	for name, inflate := range wholeImpls {
		dst := make([]byte, len(data))
		// Trailing bytes (the next pack entry) are left alone.
		n, err := inflate(dst, append(append([]byte{}, z...), "NEXT"...))
		if err != nil || n != len(z) || !bytes.Equal(dst, data) {
			t.Fatalf("%s: took %d of %d bytes, %v", name, n, len(z), err)
		}
		empty := deflated(t, nil, zlib.BestSpeed)
		if n, err := inflate(nil, empty); err != nil || n != len(empty) {
			t.Errorf("%s: empty blob: %d, %v", name, n, err)
		}
		for _, tc := range []struct {
			name string
			dst  []byte
			src  []byte
		}{
			{"dst too small", make([]byte, len(data)-1), z},
			{"dst too big", make([]byte, len(data)+1), z},
			{"cut short", dst, z[:len(z)-10]},
			{"bad checksum", dst, badSum},
			{"nothing", dst, nil},
		} {
			if _, err := inflate(tc.dst, tc.src); !errors.Is(err, errZlibData) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%s/%s: %v, want errZlibData", name, tc.name, err)
			}
		}
	}
}

func TestZlibPoolReuses(t *testing.T) {
	p := newZlibPool(512)
	for i := 0; i < 3*zlibPoolMax; i++ {
		want := bytes.Repeat([]byte{byte(i)}, i*100)
		zr, err := p.get(bytes.NewReader(deflated(t, want, zlib.BestSpeed)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("stream %d: %d bytes, %v", i, len(got), err)
		}
		p.put(zr)
	}
	// A reader left in an error state is fine after the next get.
	zr, err := p.get(bytes.NewReader([]byte{0x78, 0x9c, 1, 2}))
	if err == nil {
		_, err = io.ReadAll(zr)
		p.put(zr)
	}
	if err == nil {
		t.Fatal("damaged stream read without error")
	}
	zr, err = p.get(bytes.NewReader(deflated(t, []byte("again"), zlib.BestSpeed)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(zr); err != nil || string(got) != "again" {
		t.Fatalf("after a damaged stream: %q, %v", got, err)
	}
}

func BenchmarkZlibInflate(b *testing.B) {
	// Source-like text: words drawn at random, so that matches are short
	// as in real files.
	words := strings.Fields("func return if err != nil { } ( ) int64 byte string for range := = the a of blob tree pack zlib read offset size len cap make append copy io.EOF")
	rng := rand.New(rand.NewSource(2))
	var tb bytes.Buffer
	for tb.Len() < 1<<20 {
		tb.WriteString(words[rng.Intn(len(words))])
		tb.WriteByte(" \n\t"[rng.Intn(3)])
	}
	text := tb.Bytes()
	z := deflated(b, text, zlib.DefaultCompression)
	for implName, newZ := range zlibImpls {
		b.Run(implName, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			buf := make([]byte, 64<<10)
			for i := 0; i < b.N; i++ {
				zr, err := newZ(bytes.NewReader(z), 64<<10)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := zr.Read(buf); err != nil {
						break
					}
				}
				_ = zr.Close()
			}
		})
	}
}

// FuzzZlib: on any input the inflaters of this build agree with
// compress/zlib: the same bytes when it succeeds, an error when it fails,
// and never a crash (the C ones read input a client's repository holds).
func FuzzZlib(f *testing.F) {
	text := bytes.Repeat([]byte("fuzz the inflaters "), 200)
	for _, level := range []int{zlib.NoCompression, zlib.BestSpeed, zlib.BestCompression} {
		var b bytes.Buffer
		w, _ := zlib.NewWriterLevel(&b, level)
		w.Write(text)
		w.Close()
		f.Add(b.Bytes())
		f.Add(b.Bytes()[:b.Len()/2])
	}
	f.Add(paddedZlib([]byte("padded"), 3))
	f.Add([]byte{0x78, 0x9c})
	f.Fuzz(func(t *testing.T, in []byte) {
		zr, err := zlib.NewReader(bytes.NewReader(in))
		var want []byte
		if err == nil {
			want, err = io.ReadAll(zr)
		}
		wantOK := err == nil

		for name, newZ := range zlibImpls {
			z, err := newZ(&oneByteReader{b: in}, 7)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(z)
				z.Close()
			}
			if wantOK && (err != nil || !bytes.Equal(got, want)) {
				t.Fatalf("%s stream: %d bytes, %v; compress/zlib: %d bytes", name, len(got), err, len(want))
			}
			if !wantOK && err == nil {
				t.Fatalf("%s stream: read %d bytes of a stream compress/zlib refuses", name, len(got))
			}
		}
		for name, inflate := range wholeImpls {
			size := len(want)
			if !wantOK {
				size = len(in) * 2 // any size: it must fail
			}
			dst := make([]byte, size)
			_, err := inflate(dst, in)
			if wantOK && (err != nil || !bytes.Equal(dst, want)) {
				t.Fatalf("%s whole: %v", name, err)
			}
			if !wantOK && err == nil {
				t.Fatalf("%s whole: inflated a stream compress/zlib refuses", name)
			}
		}
	})
}
