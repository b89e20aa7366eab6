package imager

import "errors"

// BuildTar lays out the tar image of tree (placeholder, being written).
func BuildTar(tree *Tree, blobs BlobReader, opts Options) (*Layout, []Warning, error) {
	return nil, nil, errors.New("imager: tar not implemented yet")
}
