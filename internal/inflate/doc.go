// Package inflate inflates git's zlib streams: whole objects of known size
// into a caller's buffer, and streams read through an [io.Reader].
//
// Inflating is most of a first read's CPU time, so the package uses C
// libraries where the system has them, loaded at run time with
// github.com/ebitengine/purego: the binary builds with Go alone (no C
// compiler, no headers, CGO_ENABLED=0 or 1) and still inflates at C speed.
// In order of preference:
//
//   - "libdeflate+zlib (dlopen)": whole objects with libdeflate
//     (libdeflate.so.0, Debian package libdeflate0), streams with zlib;
//   - "zlib (dlopen)": both with zlib (libz.so.1, Debian package zlib1g);
//   - "go compress/zlib": both with Go's compress/zlib, when neither
//     library loads (or on systems other than linux/amd64 and
//     linux/arm64, where the libraries are not tried).
//
// libdeflate has no streaming interface, so with libdeflate but without
// zlib streams use compress/zlib ("libdeflate+go compress/zlib (dlopen)").
//
// The environment variable GITBLK_INFLATE, read once at the first use,
// forces a choice: "go" (compress/zlib only), "zlib" (zlib only, libdeflate
// not loaded) or "libdeflate" (the default when it loads). If the forced
// library does not load, the next one in the list is used and
// [DefaultError] says why. [Name] says which one is in use, for the log.
//
// Every inflater gives the same bytes as compress/zlib or an error: a
// damaged stream is an error wrapping [ErrData], never other bytes.
package inflate
