package secrets

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"filippo.io/age"
	"filippo.io/age/agessh"

	"github.com/gitblk/gitblk/imager"
)

// maxIdentityFile bounds an identity file: a key is a few hundred bytes.
const maxIdentityFile = 64 << 10

// ErrIdentityExposed refuses an identity file that every user of the host
// may read (or write).
var ErrIdentityExposed = errors.New("open to every user")

// Identity is what decrypts an export's files: the age identities of one
// file. It also keys the ids given to decrypted contents, so those ids say
// nothing about the plaintext to whoever sees an image without the key.
type Identity struct {
	ids   []age.Identity
	idKey []byte // HMAC key for content ids, derived from the identity file
	// Fingerprint names the identity in cache keys (never the key itself):
	// an image is a function of (commit, format, options, identity).
	Fingerprint string
}

// LoadIdentity reads an identity file: an age identity file
// (AGE-SECRET-KEY-1..., one or more, as age-keygen writes), or an
// unencrypted OpenSSH private key (ssh-ed25519 or ssh-rsa, as a host key),
// read with filippo.io/age/agessh as agenix and sops-nix do.
// A file that other users (not the owner or its group) may access is
// refused. The process becomes non-dumpable from here on (see
// protectProcess).
func LoadIdentity(path string) (*Identity, error) {
	protectProcess()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: identity: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o007 != 0 {
		// As ssh refuses a private key others can read: whoever can read
		// it can decrypt every commit of the repository.
		return nil, fmt.Errorf("secrets: identity %s: %w (mode %v): chmod o-rwx", path, ErrIdentityExposed, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxIdentityFile+1))
	if err != nil {
		return nil, fmt.Errorf("secrets: identity %s: %w", path, err)
	}
	defer clear(data)
	if len(data) > maxIdentityFile {
		return nil, fmt.Errorf("secrets: identity %s: larger than %d bytes", path, maxIdentityFile)
	}
	id, err := ParseIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("secrets: identity %s: %w", path, err)
	}
	return id, nil
}

// ParseIdentity reads an identity from the contents of an identity file.
func ParseIdentity(data []byte) (*Identity, error) {
	var ids []age.Identity
	if bytes.Contains(data, []byte("-----BEGIN")) {
		id, err := agessh.ParseIdentity(data)
		if err != nil {
			return nil, fmt.Errorf("not a usable SSH private key (ed25519 or RSA, without a passphrase): %v", err)
		}
		ids = []age.Identity{id}
	} else {
		var err error
		if ids, err = age.ParseIdentities(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("not an age identity file: %v", err)
		}
	}
	sum := sha256.Sum256(append([]byte("gitblk secrets identity\x00"), data...))
	fp := hmac.New(sha256.New, sum[:])
	fp.Write([]byte("fingerprint"))
	return &Identity{ids: ids, idKey: sum[:], Fingerprint: hex.EncodeToString(fp.Sum(nil))[:32]}, nil
}

// contentID is the id a decrypted file gets: an HMAC, under the
// identity's key, of the git id of its ciphertext. It is stable for a
// commit and identity, reveals nothing without the identity, and is made
// without hashing the plaintext (a hash keeps the last partial block of
// its input in a buffer on the Go heap, never zeroed).
func (id *Identity) contentID(ciphertext imager.BlobID) [20]byte {
	m := hmac.New(sha256.New, id.idKey)
	m.Write([]byte("gitblk secrets content of\x00"))
	m.Write(ciphertext[:])
	var out [20]byte
	copy(out[:], m.Sum(nil))
	return out
}
