// Package cgoref is gitblk's former cgo inflater (libdeflate linked
// statically for whole objects, the system zlib for streams), kept only as
// a reference for internal/inflate's benchmark (bench/inflate; see
// bench/README.md). Only internal/inflate's cgoref_test.go imports it:
// gitblk's binary never does. It builds only with the build tag cgoref and
// cgo, which need a C compiler and the zlib and libdeflate headers (Debian:
// zlib1g-dev, libdeflate-dev); without them the package is empty, so
// building gitblk needs neither.
package cgoref
