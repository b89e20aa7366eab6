package secrets

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// The payload of an age file (age-encryption.org/v1, "Payload"): after the
// header, a 16-byte nonce; the payload key is HKDF-SHA-256 of the file key
// with the nonce as salt and "payload" as info; then ChaCha20-Poly1305
// STREAM chunks of 64 KiB plaintext, each sealed with a 12-byte nonce of an
// 11-byte big-endian chunk counter and a last-chunk flag byte. Only the
// last chunk may be shorter; it is empty only when the whole plaintext is.
//
// filippo.io/age authenticates the header and unwraps the file key (the
// hard part, with every recipient type); this file decrypts the payload,
// so that the plaintext is written straight into the caller's locked
// memory: age's own readers decrypt each chunk into a buffer on the Go
// heap, which is freed without being zeroed and may be swapped or dumped.
const (
	ageEncChunkSize  = ageChunkSize + ageTagSize
	ageHeaderEnd     = "\n--- " // the header's MAC line; no stanza line starts with "---"
	agePayloadLabel  = "payload"
	ageStreamNonce   = chacha20poly1305.NonceSize
	ageLastChunkFlag = 1
)

// agePayload is an age file whose header a identity has opened: where its
// payload is, how it is cut, and its key.
type agePayload struct {
	aead   cipher.AEAD
	off    int64 // of the first chunk, in the file
	size   int64 // payload bytes, tags included
	chunks int64
	plain  int64 // plaintext bytes
}

// keyCapture wraps an identity to keep the file key it unwraps: age checks
// the header's MAC with that key before Decrypt returns, so a key kept
// from a Decrypt that succeeded is the file's.
type keyCapture struct {
	id  age.Identity
	key []byte
}

func (k *keyCapture) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	key, err := k.id.Unwrap(stanzas)
	if err == nil {
		k.key = key
	}
	return key, err
}

// openAge authenticates the header of the age file r (size bytes) with id
// and returns its payload. It reads the header and the nonce, not the
// payload.
func openAge(r io.ReaderAt, size int64, id *Identity) (*agePayload, error) {
	head := make([]byte, min(size, maxHeader+ageNonceSize))
	if _, err := readFullAt(r, head, 0); err != nil {
		return nil, fmt.Errorf("reading the header: %w", err)
	}
	i := bytes.Index(head, []byte(ageHeaderEnd))
	if i < 0 || i >= maxHeader {
		return nil, fmt.Errorf("no age header end in the first %d bytes", maxHeader)
	}
	nl := bytes.IndexByte(head[i+1:], '\n')
	if nl < 0 {
		return nil, errors.New("truncated age header")
	}
	hdrLen := int64(i + 1 + nl + 1)
	captures := make([]age.Identity, len(id.ids))
	for j, x := range id.ids {
		captures[j] = &keyCapture{id: x}
	}
	if _, err := age.Decrypt(io.NewSectionReader(r, 0, size), captures...); err != nil {
		return nil, err
	}
	var fileKey []byte
	for _, c := range captures {
		if k := c.(*keyCapture).key; k != nil {
			fileKey = k
		}
	}
	if fileKey == nil {
		return nil, errors.New("no identity unwrapped the file key")
	}
	defer clear(fileKey)
	if hdrLen+ageNonceSize > int64(len(head)) {
		return nil, errors.New("truncated before the payload nonce")
	}
	nonce := head[hdrLen : hdrLen+ageNonceSize]
	key, err := hkdf.Key(sha256.New, fileKey, nonce, agePayloadLabel, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("payload key: %w", err)
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	p := &agePayload{aead: aead, off: hdrLen + ageNonceSize}
	p.size = size - p.off
	if p.size < ageTagSize {
		return nil, errors.New("payload shorter than one chunk")
	}
	p.chunks = (p.size + ageEncChunkSize - 1) / ageEncChunkSize
	last := p.size - (p.chunks-1)*ageEncChunkSize
	switch {
	case last < ageTagSize:
		return nil, errors.New("last chunk shorter than its tag")
	case last == ageTagSize && p.chunks > 1:
		return nil, errors.New("empty last chunk after full ones")
	}
	p.plain = p.size - p.chunks*ageTagSize
	return p, nil
}

// decryptInto decrypts and authenticates every chunk of p, read from r,
// into dst (len p.plain). Only ciphertext passes through the heap: each
// chunk is opened in place into dst, and the registers it passes through
// are kept off the signal stacks (withPlaintextInRegisters). On failure
// dst may hold part of the plaintext; the caller zeroes it.
func (p *agePayload) decryptInto(dst []byte, r io.ReaderAt) error {
	if int64(len(dst)) != p.plain {
		return fmt.Errorf("secrets: %d bytes for %d of plaintext", len(dst), p.plain)
	}
	ct := make([]byte, ageEncChunkSize)
	var nonce [ageStreamNonce]byte
	for i := range p.chunks {
		n := min(ageEncChunkSize, p.size-i*ageEncChunkSize)
		if _, err := readFullAt(r, ct[:n], p.off+i*ageEncChunkSize); err != nil {
			return fmt.Errorf("reading chunk %d: %w", i, err)
		}
		binary.BigEndian.PutUint64(nonce[3:11], uint64(i)) // an 11-byte counter: its top 3 bytes stay 0
		if i == p.chunks-1 {
			nonce[11] = ageLastChunkFlag
		}
		out := dst[i*ageChunkSize : i*ageChunkSize+n-ageTagSize : i*ageChunkSize+n-ageTagSize]
		var got []byte
		var err error
		withPlaintextInRegisters(func() { got, err = p.aead.Open(out[:0], nonce[:], ct[:n], nil) })
		if err != nil {
			return fmt.Errorf("chunk %d: %w", i, err)
		}
		if len(got) > 0 && &got[0] != &out[0] {
			clear(got)
			return errors.New("secrets: chunk not opened in place")
		}
	}
	return nil
}

// readFullAt reads len(b) bytes at off, taking io.EOF with a full read as
// success.
func readFullAt(r io.ReaderAt, b []byte, off int64) (int, error) {
	n, err := r.ReadAt(b, off)
	switch {
	case n == len(b):
		return n, nil
	case err == nil || errors.Is(err, io.EOF):
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}
