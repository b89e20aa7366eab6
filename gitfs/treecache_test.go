package gitfs

import (
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/testutil"
)

// cacheFiles lists the listing files in a cache directory.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, treeCacheSubdir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCachedTree(t *testing.T) {
	dir := testutil.NewRepo(t)
	testutil.WriteFile(t, dir, "a.txt", []byte("a\n"), 0o644)
	testutil.WriteFile(t, dir, "bin/run", []byte("#!/bin/sh\n"), 0o755)
	testutil.WriteFile(t, dir, "secret/x", []byte("x\n"), 0o644)
	testutil.WriteFile(t, dir, "ünï/long-name.txt", []byte("n\n"), 0o644)
	testutil.WriteFile(t, dir, ".gitattributes", []byte("secret export-ignore\n"), 0o644)
	if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	testutil.CommitAll(t, dir, "one")
	r := openRepo(t, dir, Options{})
	c, err := r.Resolve("main")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	for _, exportIgnore := range []bool{true, false} {
		want, err := r.Tree(c, exportIgnore)
		if err != nil {
			t.Fatal(err)
		}
		want.Hints = nil         // where blobs lay when listed: not cached (see Tree.Hints)
		for i := 0; i < 2; i++ { // a miss that writes the file, then a hit
			got, err := r.CachedTree(c, exportIgnore, cache)
			if got != nil {
				got.Hints = nil
			}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("CachedTree(exportIgnore=%v) pass %d = %+v, %v; want %+v", exportIgnore, i, got, err, want)
			}
		}
	}
	files := cacheFiles(t, cache)
	if len(files) != 2 {
		t.Fatalf("cache files %v, want one per export-ignore choice", files)
	}

	// A damaged or foreign file is ignored and rewritten.
	want, _ := r.Tree(c, true)
	key, err := r.treeCacheKey(c, true)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cache, treeCacheSubdir, key)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damaged := map[string][]byte{
		"empty":     {},
		"truncated": good[:len(good)/2],
		"flipped":   append(append([]byte{}, good[:40]...), append([]byte{good[40] ^ 1}, good[41:]...)...),
		"garbage":   []byte("not a listing at all, but long enough to pass the size check......"),
		"other key": encodeListing(want.Entries, "someone else's key"),
	}
	// Each is logged once, as it is rebuilt; the rebuilt file is not.
	var log testutil.LogBuffer
	r.log = slog.New(slog.NewTextHandler(&log, nil))
	for name, b := range damaged {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(log.String(), "\n")
		for i := 0; i < 2; i++ {
			got, err := r.CachedTree(c, true, cache)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("%s cache file: CachedTree = %+v, %v; want git's listing", name, got, err)
			}
		}
		if b, _ := os.ReadFile(path); string(b) != string(good) {
			t.Errorf("%s cache file was not rebuilt", name)
		}
		if n := strings.Count(log.String(), "\n") - before; n != 1 || !strings.Contains(log.String(), path) {
			t.Errorf("%s cache file: %d log lines, want one naming %s:\n%s", name, n, path, log.String())
		}
	}
	// A hit serves what the file says: a valid file with one entry gives
	// one entry (so the hit above did not silently list from git).
	if err := os.WriteFile(path, encodeListing(want.Entries[:1], key), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := r.CachedTree(c, true, cache); err != nil || len(got.Entries) != 1 {
		t.Errorf("CachedTree from a one-entry file = %v, %v; want that entry", got, err)
	}
	os.Remove(path)

	// info/attributes changes what export-ignore drops, so it changes the key.
	if err := os.MkdirAll(filepath.Join(dir, ".git", "info"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".git", "info", "attributes"), []byte("a.txt export-ignore\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := r.CachedTree(c, true, cache)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got.Entries {
		if e.Path == "a.txt" {
			t.Errorf("info/attributes export-ignore not applied: the cached listing was reused")
		}
	}
	// An unwritable cache directory is not an error.
	if got, err := r.CachedTree(c, true, "/proc/no-such-dir"); err != nil || len(got.Entries) == 0 {
		t.Errorf("unwritable cache dir: %v, %v", got, err)
	}
}

// FuzzDecodeListing: any bytes decode to an error or to entries that
// encode back to the same bytes; never a panic or a huge allocation.
func FuzzDecodeListing(f *testing.F) {
	ents := []imager.Entry{
		{Path: "a", Kind: imager.KindDir},
		{Path: "a/b.txt", Kind: imager.KindFile, Size: 12, Blob: imager.BlobID{1, 2, 3}},
		{Path: "l", Kind: imager.KindSymlink, Size: 3, Target: "a/b"},
	}
	f.Add(encodeListing(ents, "k"))
	f.Add(encodeListing(nil, "k"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeListing(b, "k")
		if err != nil {
			return
		}
		if again := encodeListing(got, "k"); string(again) != string(b) {
			t.Fatalf("decode then encode changed the bytes")
		}
	})
}

// TestDecodeListingChecksFields: a file whose checksum is right but
// whose fields are not (a shared prefix longer than the previous path, an
// empty path, an unknown kind, a count the file cannot hold, bytes left
// over) is refused, and a good one round-trips, front-coded paths and
// targets included.
func TestDecodeListingChecksFields(t *testing.T) {
	seal := func(body []byte) []byte {
		sum := sha256.Sum256(body)
		return append(body, sum[:]...)
	}
	head := func(n uint64) []byte {
		b := append([]byte(treeCacheMagic), 1, 'k')
		return binary.AppendUvarint(b, n)
	}
	entry := func(b []byte, k int, suffix string, kind imager.Kind) []byte {
		b = binary.AppendUvarint(b, uint64(k))
		b = appendString(b, suffix)
		b = append(b, byte(kind), 0)
		return append(b, make([]byte, hashLen)...)
	}
	good := entry(entry(head(2), 0, "dir", imager.KindDir), 3, "/f", imager.KindFile)
	got, err := decodeListing(seal(good), "k")
	if err != nil || len(got) != 2 || got[0].Path != "dir" || got[1].Path != "dir/f" {
		t.Fatalf("good listing: %+v, %v", got, err)
	}
	for what, body := range map[string][]byte{
		"prefix too long": entry(entry(head(2), 0, "dir", imager.KindDir), 4, "/f", imager.KindFile),
		"empty path":      entry(head(1), 0, "", imager.KindFile),
		"unknown kind":    entry(head(1), 0, "x", imager.KindDir+1),
		"count too big":   entry(head(1000), 0, "x", imager.KindFile),
		"bytes left over": append(entry(head(1), 0, "x", imager.KindFile), 0),
		"wrong key":       append([]byte(treeCacheMagic), 1, 'j', 0),
	} {
		if got, err := decodeListing(seal(body), "k"); err == nil {
			t.Errorf("%s: decoded to %+v", what, got)
		}
	}
	ents := []imager.Entry{
		{Path: "a", Kind: imager.KindDir},
		{Path: "a/b", Kind: imager.KindDir},
		{Path: "a/b/c.txt", Kind: imager.KindFile, Size: 1 << 40, Blob: imager.BlobID{9}},
		{Path: "a/bb", Kind: imager.KindSymlink, Size: 5, Target: "b/c.t"},
		{Path: "z", Kind: imager.KindExecutable, Size: 0},
	}
	back, err := decodeListing(encodeListing(ents, "k"), "k")
	if err != nil || len(back) != len(ents) {
		t.Fatalf("round trip: %v, %v", back, err)
	}
	for i := range ents {
		if back[i] != ents[i] {
			t.Errorf("entry %d: %+v, want %+v", i, back[i], ents[i])
		}
	}
}
