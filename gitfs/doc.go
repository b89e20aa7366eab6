// Package gitfs shows a git commit's tree as a read-only filesystem: open a
// repository, resolve a revision to a commit, list its tree with sizes,
// and read blob ranges through bounded caches. The FUSE mount lives in
// mount*.go.
//
// Reading uses go-git with these rules, learnt the hard way:
//   - Trees are walked here, not with go-git's TreeWalker (which ends a walk
//     silently at a missing object): a missing or corrupt object is an
//     error naming the object and its path.
//   - Sizes come from object headers (loose header, pack entry header, or
//     the delta's target-size field): listing never inflates a whole blob.
//   - go-git's object storage is not safe for concurrent use (go-git#773):
//     a Repo keeps a small pool of independent storages, each used by one
//     goroutine at a time; an open inflate stream needs none of them.
//   - Objects move while we serve (git gc, git repack, fetch): any failed
//     lookup reloads that storage's view of packs and loose objects and is
//     tried once more. Objects that are really gone stay errors.
//   - Memory is bounded by Options, never by content: go-git streams any
//     object over 1 MiB (filesystem.Options.LargeObjectThreshold), small
//     blobs are cached whole in a byte-bounded LRU, and big blobs are
//     spilled once to a bounded on-disk cache (see cache.go).
//
// Limits: the user's global attributes file is not read for export-ignore;
// objects in alternates are not found by size lookups; SHA-256
// repositories are not supported.
package gitfs
