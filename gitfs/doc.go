// Package gitfs shows a git commit's tree as a read-only filesystem: open a
// repository, resolve a revision to a commit, list its tree with sizes,
// and read blob ranges through bounded caches. The FUSE mount lives in
// mount*.go.
//
// go-git reads the repository (refs, revisions, trees), with these rules,
// learnt the hard way:
//   - Trees are walked here, not with go-git's TreeWalker (which ends a walk
//     silently at a missing object): a missing or corrupt object is an
//     error naming the object and its path.
//   - go-git's object storage is not safe for concurrent use (go-git#773):
//     a Repo keeps a small pool of independent storages, each used by one
//     goroutine at a time; an open inflate stream needs none of them.
//   - Objects move while we serve (git gc, git repack, fetch): a storage
//     reloads its view when objects/pack changes, and any failed lookup
//     reloads it and is tried once more. Objects really gone stay errors.
//   - Memory is bounded by Options, never by content: go-git streams any
//     object over 1 MiB (filesystem.Options.LargeObjectThreshold), small
//     blobs are cached whole in a byte-bounded LRU, and big blobs are
//     spilled once to a bounded on-disk cache (see cache.go).
//
// Where go-git measured far slower than git, this package reads the object
// files itself, and falls back to go-git for anything it does not find:
// blob sizes from pack entry and loose headers (blob_size.go), every blob's
// content from packs and loose files (blob_direct.go, blob_loose.go),
// deltas rebuilt against cached bases (blob_delta.go), inflated with C
// zlib and libdeflate when built with cgo (zlib*.go). Each file states the
// numbers that justified it.
//
// Limits: without a usable disk cache, a delta chain over big blobs deeper
// than 64 is refused (blob_chain.go); the user's global attributes file is
// not read for export-ignore;
// objects in alternates (git clone --shared) are found only through
// go-git, which reads a big packed blob there whole into memory; SHA-256
// repositories are not supported; every storage of the pool holds the
// pack indexes in memory (fine for ordinary repositories, costly for ones
// with tens of millions of objects).
package gitfs
