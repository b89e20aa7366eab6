package imager

import "fmt"

// Format is an image format.
type Format string

// Formats.
const (
	FormatTar Format = "tar"
	FormatFAT Format = "fat"
)

// ParseFormat accepts "tar" or "fat".
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case FormatTar, FormatFAT:
		return Format(s), nil
	}
	return "", fmt.Errorf("imager: unknown format %q (want tar or fat)", s)
}

// SymlinkMode says what an image does with symlinks.
type SymlinkMode string

// Symlink modes. The zero value means the format's default: keep for tar
// (as git archive), follow for FAT (which has no symlinks).
const (
	SymlinksDefault SymlinkMode = ""
	SymlinksKeep    SymlinkMode = "keep"   // tar only: a symlink entry, as git archive writes
	SymlinksFollow  SymlinkMode = "follow" // a copy of the target when it lies inside the tree, else skipped with a warning
	SymlinksSkip    SymlinkMode = "skip"   // left out, with a warning
)

// ParseSymlinkMode accepts keep, follow or skip.
func ParseSymlinkMode(s string) (SymlinkMode, error) {
	switch SymlinkMode(s) {
	case SymlinksKeep, SymlinksFollow, SymlinksSkip:
		return SymlinkMode(s), nil
	}
	return "", fmt.Errorf("imager: unknown symlink mode %q (want keep, follow or skip)", s)
}

// Options select an image. Same tree, same Options: same bytes.
type Options struct {
	Format     Format
	Symlinks   SymlinkMode
	FATType    int // 0: FAT16 when the tree fits, else FAT32; 16 or 32 forces one
	SectorSize int // FAT bytes per sector: 0 or 512, or 4096
}

// Build lays out the image of tree in the format opts names.
func Build(tree *Tree, blobs BlobReader, opts Options) (*Layout, []Warning, error) {
	switch opts.Format {
	case FormatTar, "":
		return BuildTar(tree, blobs, opts)
	case FormatFAT:
		return BuildFAT(tree, blobs, opts)
	}
	return nil, nil, fmt.Errorf("imager: unknown format %q", opts.Format)
}
