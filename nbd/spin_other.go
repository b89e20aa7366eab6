//go:build !linux

package nbd

// awaitRequest does not wait here: the reader blocks on the next request
// at once.
func (cn *conn) awaitRequest() {}
