package secrets_test

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/secrets"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian packages age, openssh-client, git): %v", tool, err)
		}
	}
}

func run(t *testing.T, dir string, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.org", "GIT_AUTHOR_DATE=2020-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2020-01-02T03:04:05Z")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// keys makes an age identity (age-keygen) and an ssh-ed25519 key
// (ssh-keygen) in dir and returns their paths and recipients.
type keys struct {
	ageID, ageRecipient string
	sshID, sshPub       string
}

func makeKeys(t *testing.T, dir string) keys {
	need(t, "age", "age-keygen", "ssh-keygen")
	k := keys{ageID: filepath.Join(dir, "host.txt"), sshID: filepath.Join(dir, "ssh_host_ed25519_key")}
	run(t, dir, nil, "age-keygen", "-o", k.ageID)
	k.ageRecipient = strings.TrimSpace(string(run(t, dir, nil, "age-keygen", "-y", k.ageID)))
	run(t, dir, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "host", "-f", k.sshID)
	k.sshPub = k.sshID + ".pub"
	return k
}

// ageEncrypt encrypts plain with the age CLI: -r RECIPIENT or -R FILE.
func ageEncrypt(t *testing.T, plain []byte, args ...string) []byte {
	return run(t, "", plain, "age", append([]string{"-e"}, args...)...)
}

func ageDecrypt(t *testing.T, ct []byte, identity string) []byte {
	return run(t, "", ct, "age", "-d", "-i", identity)
}

// repo commits files (path -> content) to a new repository and returns
// its tree as gitfs lists it, with the repository as blob reader.
func repo(t *testing.T, files map[string][]byte) (*imager.Tree, *gitfs.Repo) {
	need(t, "git")
	dir := t.TempDir()
	run(t, dir, nil, "git", "init", "-q", "-b", "main")
	for p, data := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, dir, nil, "git", "add", "-A")
	run(t, dir, nil, "git", "commit", "-q", "-m", "keys")
	r, err := gitfs.Open(dir, gitfs.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	c, err := r.Resolve("main")
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.Tree(c, true)
	if err != nil {
		t.Fatal(err)
	}
	return tree, r
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// tarFiles reads the regular files of a tar image.
func tarFiles(t *testing.T, img imager.Image) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(io.NewSectionReader(img, 0, img.Size()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = b
		}
	}
}

func TestDecryptServesAgeOutput(t *testing.T) {
	dir := t.TempDir()
	k := makeKeys(t, dir)
	tlsKey := []byte("-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n")
	big := random(200<<10 + 17) // several STREAM chunks and a partial last one
	marker := []byte("gitblk-test-marker-7f3a9c")
	copy(big[100<<10:], marker)
	// Every file is encrypted to both identities (age -r and age -R), so
	// each identity unwraps its own stanza.
	both := []string{"-r", k.ageRecipient, "-R", k.sshPub}
	ctTLS := ageEncrypt(t, tlsKey, both...)
	ctBig := ageEncrypt(t, big, both...)
	ctBoth := ageEncrypt(t, []byte("token"), both...)
	ctEmpty := ageEncrypt(t, nil, both...)
	files := map[string][]byte{
		"tls/server.key.age": ctTLS,
		"tls/server.crt":     []byte("public certificate\n"),
		"blob.bin.age":       ctBig,
		"api-token.age":      ctBoth,
		"blob.bin-notes":     []byte("sorts after blob.bin, before blob.bin.age"),
		"empty.age":          ctEmpty,
		"dir.age/inner":      []byte("a directory named .age is not decrypted"),
	}
	tree, r := repo(t, files)
	for _, idPath := range []string{k.ageID, k.sshID} {
		t.Run(filepath.Base(idPath), func(t *testing.T) {
			id, err := secrets.LoadIdentity(idPath)
			if err != nil {
				t.Fatal(err)
			}
			budget := secrets.NewBudget(16 << 20)
			dec, err := secrets.Decrypt(tree, r, id, secrets.Options{MaxFile: 1 << 20, Budget: budget})
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Release()
			if dec.Files() != 4 || dec.Bytes() != int64(len(tlsKey)+len(big)+len("token")) {
				t.Errorf("Files %d Bytes %d", dec.Files(), dec.Bytes())
			}
			if budget.Used() != dec.Bytes() {
				t.Errorf("budget used %d, want %d", budget.Used(), dec.Bytes())
			}
			var paths []string
			for _, e := range dec.Tree.Entries {
				paths = append(paths, e.Path)
			}
			want := "api-token blob.bin blob.bin-notes dir.age dir.age/inner empty tls tls/server.crt tls/server.key"
			if got := strings.Join(paths, " "); got != want {
				t.Errorf("entries\n got %s\nwant %s", got, want)
			}
			l, _, err := imager.Build(dec.Tree, dec, imager.Options{Format: imager.FormatTar})
			if err != nil {
				t.Fatal(err)
			}
			got := tarFiles(t, l)
			wantFiles := map[string][]byte{
				"tls/server.key": ageDecrypt(t, ctTLS, k.ageID),
				"blob.bin":       ageDecrypt(t, ctBig, k.sshID),
				"api-token":      ageDecrypt(t, ctBoth, k.ageID),
				"empty":          {},
				"tls/server.crt": files["tls/server.crt"],
				"blob.bin-notes": files["blob.bin-notes"],
				"dir.age/inner":  files["dir.age/inner"],
			}
			for p, w := range wantFiles {
				if !bytes.Equal(got[p], w) {
					t.Errorf("%s: %d bytes, want %d (age -d output)", p, len(got[p]), len(w))
				}
			}
			for p := range got {
				if strings.HasSuffix(p, ".age") {
					t.Errorf("ciphertext served as %s", p)
				}
			}
			// Same identity, same tree: same image bytes (the content ids
			// appear in pax headers of long names, so they must be stable).
			dec2, err := secrets.Decrypt(tree, r, id, secrets.Options{MaxFile: 1 << 20, Budget: budget})
			if err != nil {
				t.Fatal(err)
			}
			l2, _, _ := imager.Build(dec2.Tree, dec2, imager.Options{Format: imager.FormatTar})
			if !bytes.Equal(readAll(t, l), readAll(t, l2)) {
				t.Error("two decryptions give different images")
			}
			dec2.Release()
			if budget.Used() != dec.Bytes() {
				t.Errorf("after one Release: used %d", budget.Used())
			}
			// No file the test, the repository or its caches wrote holds
			// plaintext: only ciphertext was ever written.
			if scanForPlaintext(t, filepath.Dir(dir), marker)+scanForPlaintext(t, filepath.Dir(dir), tlsKey) != 0 {
				t.Error("plaintext found on disk")
			}
			if scanForPlaintext(t, filepath.Dir(dir), files["tls/server.crt"]) == 0 {
				t.Error("the scan does not even find a plain file of the work tree")
			}
			// A FAT image of the same tree holds the same files.
			if _, _, err := imager.Build(dec.Tree, dec, imager.Options{Format: imager.FormatFAT}); err != nil {
				t.Errorf("FAT image: %v", err)
			}
		})
	}
}

func readAll(t *testing.T, img imager.Image) []byte {
	b := make([]byte, img.Size())
	if _, err := img.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

func TestFailClosed(t *testing.T) {
	dir := t.TempDir()
	k := makeKeys(t, dir)
	other := filepath.Join(dir, "other.txt")
	run(t, dir, nil, "age-keygen", "-o", other)
	ct := ageEncrypt(t, []byte("secret-value"), "-r", k.ageRecipient)
	damaged := bytes.Clone(ct)
	damaged[len(damaged)-3] ^= 0x40 // in the last chunk's tag
	truncated := ct[:len(ct)-1]
	armored := run(t, "", []byte("secret-value"), "age", "-e", "-a", "-r", k.ageRecipient)
	big := ageEncrypt(t, random(3000), "-r", k.ageRecipient)

	id, err := secrets.LoadIdentity(k.ageID)
	if err != nil {
		t.Fatal(err)
	}
	otherID, err := secrets.LoadIdentity(other)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		files   map[string][]byte
		id      *secrets.Identity
		maxFile int64
		budget  int64
		want    error
		path    string
	}{
		{"wrong identity", map[string][]byte{"k.age": ct}, otherID, 1 << 20, 1 << 20, secrets.ErrDecrypt, "k.age"},
		{"damaged tag", map[string][]byte{"a/k.age": damaged}, id, 1 << 20, 1 << 20, secrets.ErrDecrypt, "a/k.age"},
		{"truncated", map[string][]byte{"k.age": truncated}, id, 1 << 20, 1 << 20, secrets.ErrDecrypt, "k.age"},
		{"not age at all", map[string][]byte{"k.age": []byte("plain text pretending\n")}, id, 1 << 20, 1 << 20, secrets.ErrDecrypt, "k.age"},
		{"armored", map[string][]byte{"k.age": armored}, id, 1 << 20, 1 << 20, secrets.ErrDecrypt, "k.age"},
		{"beside plain", map[string][]byte{"k.age": ct, "k": []byte("old")}, id, 1 << 20, 1 << 20, secrets.ErrConflict, "k.age beside k"},
		{"beside dir", map[string][]byte{"k.age": ct, "k/x": []byte("old")}, id, 1 << 20, 1 << 20, secrets.ErrConflict, "k.age beside k"},
		{"only suffix", map[string][]byte{".age": ct}, id, 1 << 20, 1 << 20, secrets.ErrDecrypt, ".age"},
		{"over file cap", map[string][]byte{"big.age": big}, id, 2999, 1 << 20, secrets.ErrTooLarge, "big.age"},
		{"ciphertext over file cap", map[string][]byte{"big.age": big}, id, 10, 1 << 20, secrets.ErrTooLarge, "big.age"},
		{"over budget", map[string][]byte{"big.age": big, "k.age": ct}, id, 1 << 20, 3000, secrets.ErrMemory, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree, r := repo(t, tt.files)
			budget := secrets.NewBudget(tt.budget)
			dec, err := secrets.Decrypt(tree, r, tt.id, secrets.Options{MaxFile: tt.maxFile, Budget: budget})
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("Decrypt = %v, %v; want %v naming %q", dec, err, tt.want, tt.path)
			}
			if budget.Used() != 0 {
				t.Errorf("a failed decryption holds %d bytes of the budget", budget.Used())
			}
		})
	}
	// At the caps exactly, it works.
	tree, r := repo(t, map[string][]byte{"big.age": big})
	budget := secrets.NewBudget(3000)
	dec, err := secrets.Decrypt(tree, r, id, secrets.Options{MaxFile: 3000, Budget: budget})
	if err != nil {
		t.Fatalf("at the caps: %v", err)
	}
	dec.Release()
}

func TestReleaseAndPool(t *testing.T) {
	dir := t.TempDir()
	k := makeKeys(t, dir)
	plain := []byte("pool-secret")
	tree, r := repo(t, map[string][]byte{"k.age": ageEncrypt(t, plain, "-r", k.ageRecipient), "pub": []byte("x")})
	id, err := secrets.LoadIdentity(k.ageID)
	if err != nil {
		t.Fatal(err)
	}
	budget := secrets.NewBudget(1 << 20)
	pool := secrets.NewPool()
	var builds int
	var mu sync.Mutex
	build := func() (*imager.Layout, []imager.Warning, *secrets.Decrypted, error) {
		mu.Lock()
		builds++
		mu.Unlock()
		dec, err := secrets.Decrypt(tree, r, id, secrets.Options{MaxFile: 1 << 20, Budget: budget})
		if err != nil {
			return nil, nil, nil, err
		}
		l, ws, err := imager.Build(dec.Tree, dec, imager.Options{Format: imager.FormatTar})
		if err != nil {
			dec.Release()
			return nil, nil, nil, err
		}
		return l, ws, dec, nil
	}
	var wg sync.WaitGroup
	layouts := make([]*imager.Layout, 8)
	releases := make([]func(), 8)
	for i := range layouts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, _, rel, err := pool.Acquire("key", build)
			if err != nil {
				t.Error(err)
				return
			}
			layouts[i], releases[i] = l, rel
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if builds != 1 || pool.Held() != 1 {
		t.Errorf("8 concurrent holders: %d builds, %d held; want 1, 1", builds, pool.Held())
	}
	if got := tarFiles(t, layouts[0])["k"]; !bytes.Equal(got, plain) {
		t.Errorf("k = %q", got)
	}
	for _, rel := range releases[1:] {
		rel()
		rel() // a second call is harmless
	}
	if budget.Used() != int64(len(plain)) {
		t.Errorf("one holder left: budget used %d", budget.Used())
	}
	releases[0]()
	if budget.Used() != 0 || pool.Held() != 0 {
		t.Errorf("after the last release: used %d, held %d", budget.Used(), pool.Held())
	}
	// The released image reads nothing.
	buf := make([]byte, layouts[0].Size())
	if _, err := layouts[0].ReadAt(buf, 0); !errors.Is(err, secrets.ErrReleased) {
		t.Errorf("read after release: %v, want ErrReleased", err)
	}
	if bytes.Contains(buf, plain) {
		t.Error("plaintext read after release")
	}
	// The next holder builds again.
	_, _, rel, err := pool.Acquire("key", build)
	if err != nil || builds != 2 {
		t.Fatalf("after release: %v, %d builds", err, builds)
	}
	rel()
	// A failing build is not kept.
	fail := func() (*imager.Layout, []imager.Warning, *secrets.Decrypted, error) {
		return nil, nil, nil, secrets.ErrDecrypt
	}
	if _, _, _, err := pool.Acquire("bad", fail); !errors.Is(err, secrets.ErrDecrypt) || pool.Held() != 0 {
		t.Errorf("failed build: %v, held %d", err, pool.Held())
	}
}

func TestLoadIdentityErrors(t *testing.T) {
	dir := t.TempDir()
	need(t, "ssh-keygen")
	bad := map[string][]byte{
		"empty":      {},
		"garbage":    []byte("hello\n"),
		"age public": []byte("age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq\n"),
	}
	for name, data := range bad {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, data, 0o600)
		if _, err := secrets.LoadIdentity(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: LoadIdentity = %v, want an error naming the file", name, err)
		}
	}
	enc := filepath.Join(dir, "enc_key")
	run(t, dir, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", enc)
	if _, err := secrets.LoadIdentity(enc); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("passphrase-protected key: %v", err)
	}
	if _, err := secrets.LoadIdentity(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
	// A key every user may read is refused, as ssh refuses one; the owner's
	// group may read it (a service account reading the host key).
	k := makeKeys(t, dir)
	for mode, ok := range map[os.FileMode]bool{0o600: true, 0o640: true, 0o644: false, 0o604: false, 0o602: false} {
		os.Chmod(k.ageID, mode)
		_, err := secrets.LoadIdentity(k.ageID)
		if ok != (err == nil) || (!ok && !errors.Is(err, secrets.ErrIdentityExposed)) {
			t.Errorf("identity with mode %v: %v, want ok=%v", mode, err, ok)
		}
	}
}

// scanForPlaintext returns how many files under root contain needle.
func scanForPlaintext(t *testing.T, root string, needle []byte) int {
	t.Helper()
	n, hits := 0, 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		n++
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, needle) {
			hits++
		}
		return nil
	})
	if n == 0 {
		t.Errorf("no files under %s: the scan proves nothing", root)
	}
	return hits
}
