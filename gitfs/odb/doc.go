// Package odb is the object store under gitfs: it reads git objects from
// pack and loose files, inflates them, rebuilds deltas along their chains,
// and keeps what it inflated in bounded caches (small blobs in memory and
// in an on-disk log, big ones spilled to files for random access). Its
// entry points are Store.ReadBlob (a range of a blob), Store.BlobSize and
// Store.BlobSizes (sizes from entry headers, the latter in pack order)
// and Store.ReadObject (a whole tree, commit or small blob); refs and
// revisions are read through Store.WithGit.
//
// Pack indexes are read by this package (packidx.go), one table per pack
// per process: 24 bytes per object (id and offset), plus 4 per
// object once a delta's base is looked up by offset. Trees, commits and
// tags are read whole from the packs (object.go), also for go-git, whose
// storages see objects through gitStorage: go-git loads its own copy of
// the pack indexes into a storage only when it reads an object our packs
// do not hold (an alternate, a pack newer than our list, a loose delta
// base).
//
// go-git is the fallback behind them, with these rules:
//   - go-git's object storage is not safe for concurrent use (go-git#773):
//     a Store keeps a small pool of independent storages, each used by one
//     goroutine at a time (pool.go); an open inflate stream needs none.
//   - Objects move while we serve (git gc, git repack, fetch): a storage
//     reloads its view when objects/pack changes, and any failed lookup
//     reloads it and is tried once more. Objects really gone stay errors.
//   - go-git follows delta bases by recursion and would overflow the stack
//     on a looping chain: every object it reads is checked first
//     (checkObject).
//   - go-git streams any object over 1 MiB (LargeObjectThreshold) instead
//     of reading it whole to learn its size.
//
// Blobs are read without go-git where this package finds them (read.go):
// go-git resolves every small delta in full, hashing it, to answer its type
// and size; its streaming delta reader rereads its base from the start at
// each backward copy; and its loose reader hashes every byte as it
// streams. Inflating goes through internal/inflate (C zlib and libdeflate
// loaded at run time where the system has them, else compress/zlib).
//
// Limits: without a usable disk cache, a delta chain over big blobs deeper
// than 64 is refused (chain.go); objects in alternates (git clone
// --shared) are found only through go-git, which reads a big packed blob
// there whole into memory, and make the go-git storages that read them load
// their own pack indexes; SHA-256 repositories are not supported; pack
// indexes are held in memory (24 bytes per object).
package odb
