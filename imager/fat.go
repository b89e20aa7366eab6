package imager

import "errors"

// BuildFAT lays out the FAT image of tree (placeholder, being written).
func BuildFAT(tree *Tree, blobs BlobReader, opts Options) (*Layout, []Warning, error) {
	return nil, nil, errors.New("imager: fat not implemented yet")
}
