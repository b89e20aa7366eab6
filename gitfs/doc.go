// Package gitfs shows a git commit's tree as a read-only filesystem: open a
// repository, resolve a revision to a commit, list its tree with sizes,
// apply export-ignore attributes, and lay out images of it. Objects are
// read through the object store below it (package gitfs/odb); the FUSE
// mount beside it (package gitfs/fusefs) needs only imager's types.
//
// Trees are walked here, not with go-git's TreeWalker (which ends a walk
// silently at a missing object): a missing or corrupt object is an error
// naming the object and its path. Refs and revisions are read with go-git,
// afresh on every call, so a moved ref is seen without reopening.
//
// Limits: the user's global attributes file is not read for export-ignore;
// see package odb for the object store's.
package gitfs
