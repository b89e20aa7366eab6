// Package nbd is a read-only Network Block Device server (fixed newstyle
// handshake, NetworkBlockDevice/nbd doc/proto.md) for anything with Size and
// ReadAt. It knows nothing of git, image formats or policy: it establishes
// who the peer is (unix socket SO_PEERCRED, TCP address, TLS client
// certificate) and a resolver function, given the peer, maps an export name
// to an Image, once per name per connection; the connection serves that
// pinned Image until it closes.
//
// What it implements: options INFO, GO, LIST, ABORT, EXPORT_NAME, STARTTLS
// (crypto/tls; per listener off, on or require, doc/proto.md "TLS support"),
// STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT (base:allocation);
// every other option is answered NBD_REP_ERR_UNSUP. Commands READ (simple or structured replies, holes for the zero runs
// of images that implement ExtentImage), BLOCK_STATUS, FLUSH and CACHE
// (no-ops on a read-only export), DISC. WRITE, TRIM and WRITE_ZEROES get NBD_EPERM.
// Requests run concurrently (up to Server.MaxInFlight per connection) and
// are answered out of order; every request is validated and, for reads, the
// data read before the first byte of its reply is written, so a failed read
// is an NBD_EIO reply and never a broken stream.
//
// Limits, each a hard disconnect as the spec allows against denial of
// service: a handshake deadline (on the time spent waiting for the client,
// never on the resolver's work), a cap on the number of options and on one
// option's data, a 4096-byte string limit, a WRITE payload above the maximum
// payload. Reads above the advertised 32 MiB maximum get NBD_EINVAL and the
// connection stays up; buffer memory per connection is capped by
// Server.MaxBufferBytes.
//
// Not implemented: TLS pre-shared keys, writes, the experimental extended
// headers, oldstyle negotiation.
package nbd
