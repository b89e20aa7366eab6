package imager

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

// warmBlobs is memBlobs that records what it is asked to warm.
type warmBlobs struct {
	memBlobs
	mu     sync.Mutex
	warmed []BlobID
}

func (w *warmBlobs) WarmBlob(id BlobID, size int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warmed = append(w.warmed, id)
}

func (w *warmBlobs) got() []BlobID {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]BlobID(nil), w.warmed...)
}

// A reader going front to back has the big blobs ahead of it warmed, each
// once and in image order, both formats; a lone read far into the image
// warms nothing; the bytes read are the image's.
func TestReadaheadWarmsBigBlobsAhead(t *testing.T) {
	var files []memFile
	var bigIDs []BlobID
	for i := range 6 {
		files = append(files, memFile{Path: fmt.Sprintf("a/small%d", i), Kind: KindFile, Data: bytes.Repeat([]byte{byte(i)}, 3000)})
		data := bytes.Repeat([]byte{byte(i) | 0x80}, warmMin+4096*(i+1))
		files = append(files, memFile{Path: fmt.Sprintf("b/big%d", i), Kind: KindFile, Data: data})
		bigIDs = append(bigIDs, gitObjectID("blob", data))
	}
	tree, blobs := memTree(t, files, "", testTime)
	for _, build := range []struct {
		name string
		fn   func(*Tree, BlobReader, Options) (*Layout, []Warning, error)
	}{{"tar", BuildTar}, {"fat", BuildFAT}} {
		t.Run(build.name, func(t *testing.T) {
			plain, _, err := build.fn(tree, blobs, Options{})
			if err != nil {
				t.Fatal(err)
			}
			want := readImage(t, plain)

			w := &warmBlobs{memBlobs: blobs}
			l, _, err := build.fn(tree, w, Options{})
			if err != nil {
				t.Fatal(err)
			}
			p := make([]byte, 64<<10)
			if _, err := l.ReadAt(p, l.Size()/2); err != nil {
				t.Fatal(err)
			}
			if got := w.got(); len(got) != 0 {
				t.Errorf("a lone read warmed %d blobs", len(got))
			}
			var img []byte
			for off := int64(0); off < l.Size(); off += int64(len(p)) {
				n, err := l.ReadAt(p, off)
				if n == 0 {
					t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
				}
				img = append(img, p[:n]...)
			}
			if !bytes.Equal(img, want) {
				t.Fatalf("bytes read with read-ahead differ from the image")
			}
			// Every big blob but one the first read was already in.
			var ahead []BlobID
			for e := range l.Extents() {
				if e.Kind == ExtentBlob && e.Len > warmMin && e.Off >= int64(len(p)) {
					ahead = append(ahead, e.Blob)
				}
			}
			if len(ahead) < len(bigIDs)-1 {
				t.Fatalf("only %d of the %d big blobs start after the first read", len(ahead), len(bigIDs))
			}
			got := w.got()
			if len(got) != len(ahead) {
				t.Fatalf("warmed %d blobs, want the %d big ones ahead: %v", len(got), len(ahead), got)
			}
			for k := range got {
				if got[k] != ahead[k] {
					t.Errorf("warmed[%d] = %s, want %s (image order)", k, got[k], ahead[k])
				}
			}
		})
	}
}

// A blob reader that cannot warm gets no read-ahead.
func TestReadaheadNeedsAWarmer(t *testing.T) {
	tree, blobs := memTree(t, []memFile{{Path: "f", Kind: KindFile, Data: []byte("x")}}, "", testTime)
	l, _, err := BuildTar(tree, blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l.ra != nil {
		t.Errorf("read-ahead set up without a BlobWarmer")
	}
}
