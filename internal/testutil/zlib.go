package testutil

import (
	"encoding/binary"
	"hash/adler32"
)

// PaddedZlib is a valid zlib stream of data (at most 65535 bytes) that
// starts with n empty stored blocks: far longer than any bound on its
// compressed size, as another encoder than git's may write (RFC 1950 and
// RFC 1951's stored blocks).
func PaddedZlib(data []byte, n int) []byte {
	z := []byte{0x78, 0x01}
	for i := 0; i < n; i++ {
		z = append(z, 0x00, 0x00, 0x00, 0xff, 0xff) // not final, stored, LEN 0
	}
	z = append(z, 0x01) // final, stored
	z = binary.LittleEndian.AppendUint16(z, uint16(len(data)))
	z = binary.LittleEndian.AppendUint16(z, ^uint16(len(data)))
	z = append(z, data...)
	return binary.BigEndian.AppendUint32(z, adler32.Checksum(data))
}
