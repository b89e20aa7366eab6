// Package nbd is a read-only Network Block Device server (fixed newstyle
// handshake, NetworkBlockDevice/nbd doc/proto.md) for anything with Size and
// ReadAt. It knows nothing of git or image formats: a resolver function maps
// an export name to an Image, once per name per connection, and the
// connection serves that pinned Image until it closes.
//
// What it implements: options INFO, GO, LIST, ABORT, EXPORT_NAME,
// STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT (base:allocation);
// every other option is answered NBD_REP_ERR_UNSUP (STARTTLS included: no
// TLS). Commands READ (simple or structured replies, holes for the zero runs
// of images that implement ExtentImage), BLOCK_STATUS, FLUSH and CACHE
// (no-ops on a read-only export), DISC. WRITE, TRIM and WRITE_ZEROES get NBD_EPERM.
// Requests run concurrently (up to Server.MaxInFlight per connection) and
// are answered out of order; every request is validated and, for reads, the
// data read before the first byte of its reply is written, so a failed read
// is an NBD_EIO reply and never a broken stream.
//
// Limits, each a hard disconnect as the spec allows against denial of
// service: a handshake deadline, a cap on the number of options and on one
// option's data, a 4096-byte string limit, a WRITE payload above the maximum
// payload. Reads above the advertised 32 MiB maximum get NBD_EINVAL and the
// connection stays up; buffer memory per connection is capped by
// Server.MaxBufferBytes.
//
// Not implemented: TLS, writes, the experimental extended headers, oldstyle
// negotiation.
package nbd
