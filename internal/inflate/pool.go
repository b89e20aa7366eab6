package inflate

import "io"

// Pool keeps idle Readers of one input buffer size, so that inflating a
// small object allocates nothing. It holds at most PoolMax Readers; more
// are closed. It is safe for concurrent use.
type Pool struct {
	inf     *Inflater // nil: Default, looked up at the first Get
	bufSize int
	free    chan Reader
}

// PoolMax is the most idle Readers a Pool keeps.
const PoolMax = 16

// NewPool returns a Pool of Default's Readers reading bufSize bytes at a
// time. It loads nothing: a package-level Pool costs nothing until used.
func NewPool(bufSize int) *Pool {
	return &Pool{bufSize: bufSize, free: make(chan Reader, PoolMax)}
}

// NewPool returns a Pool of f's Readers reading bufSize bytes at a time.
func (f *Inflater) NewPool(bufSize int) *Pool {
	return &Pool{inf: f, bufSize: bufSize, free: make(chan Reader, PoolMax)}
}

// BufSize is the input buffer size of the Pool's Readers.
func (p *Pool) BufSize() int { return p.bufSize }

// Get returns a Reader of src, an idle one reset or a new one.
func (p *Pool) Get(src io.Reader) (Reader, error) {
	select {
	case z := <-p.free:
		if err := z.Reset(src); err != nil {
			_ = z.Close()
			return nil, err
		}
		return z, nil
	default:
		if p.inf == nil {
			return Default().NewReader(src, p.bufSize)
		}
		return p.inf.NewReader(src, p.bufSize)
	}
}

// Put gives z, from Get, back for reuse; z may be in any state.
func (p *Pool) Put(z Reader) {
	select {
	case p.free <- z:
	default:
		_ = z.Close()
	}
}
