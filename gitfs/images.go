package gitfs

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/gitblk/gitblk/imager"
)

// Images lays out images of commits and keeps the last few layouts, keyed by
// tree id and options: a layout is a pure function of those, so connections,
// mounts and refs that share a tree share its layout. Concurrent requests
// for one key lay it out once. Readers that hold a layout (an NBD
// connection) pin it. Safe for concurrent use.
type Images struct {
	repo     *Repo
	max      int
	cacheDir string // where tree listings are kept; "" for none

	// OnBuild, when set before the first Image call, is called after each
	// layout Image really computes (not for one it returns from memory),
	// with its options, how long listing the tree and laying it out took,
	// and the failure if any: for metrics.
	OnBuild func(opts imager.Options, d time.Duration, err error)

	mu      sync.Mutex
	entries map[imageKey]*imageEntry
	pins    *Pins // readers' holds, its own unless SetPins shares one
	tick    uint64
	lists   map[string]*listing // tree listings being laid out, by tree id
}

// listing is a tree listing shared by the layouts being made of it at
// the same time (the tar and FAT images of one commit, asked for at
// once, list the tree once); it is dropped when the last is made, so a
// listing is not held beside the layouts made from it.
type listing struct {
	done  chan struct{} // closed when tree and err are set
	tree  *imager.Tree
	err   error
	users int
	save  func() // writes the listing to the cache once the last user is done; nil for none
}

type imageKey struct {
	tree string
	opts imager.Options
}

type imageEntry struct {
	done     chan struct{} // closed when layout, warnings and err are set
	layout   *imager.Layout
	warnings []imager.Warning
	err      error
	used     uint64
}

// buildSlots bounds layouts being made at once, process-wide: a burst of
// clients asking for many refs queues instead of listing many trees at once.
var buildSlots = make(chan struct{}, 2)

// NewImages returns a layout cache over repo keeping at most max layouts
// in memory (0 or more than MaxImages: MaxImages), and tree listings on
// disk under cacheDir ("" for none).
func NewImages(repo *Repo, max int, cacheDir string) *Images {
	if max <= 0 || max > MaxImages {
		max = MaxImages
	}
	return &Images{repo: repo, max: max, cacheDir: cacheDir,
		entries: make(map[imageKey]*imageEntry), pins: NewPins(),
		lists: make(map[string]*listing)}
}

// Pin counts a reader's hold on layout l, which Image returned, and keeps
// it from being dropped; release ends the hold. It fails with
// ErrTooManyImages when l is not pinned yet and MaxImages layouts are (in
// this Images, or in all that share its Pins).
func (im *Images) Pin(l *imager.Layout) (release func(), err error) {
	return im.pinsOf().Pin(l)
}

// SetPins makes im count its pins in p, which other Images may share, so
// that MaxImages bounds the layouts pinned in all of them together. Call it
// before the first Pin.
func (im *Images) SetPins(p *Pins) {
	im.mu.Lock()
	defer im.mu.Unlock()
	im.pins = p
}

func (im *Images) pinsOf() *Pins {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.pins
}

// Built is one result of Images.All: what Image returned for opts.
type Built struct {
	Opts     imager.Options
	Layout   *imager.Layout
	Warnings []imager.Warning
	Err      error
}

// All lays out commit c's images in each of opts over one listing of its
// tree: the others do not list the tree again. Once the tree is listed, as
// many layouts are made at once as there are cores (in the order of opts
// when they are fewer), so the first is ready about as soon as it alone
// would be. It returns what Image returns for each.
func (im *Images) All(c *Commit, opts ...imager.Options) []Built {
	out := make([]Built, len(opts))
	im.mu.Lock()
	missing := false
	for _, o := range opts {
		if _, ok := im.entries[imageKey{tree: c.Tree, opts: o}]; !ok {
			missing = true
		}
	}
	im.mu.Unlock()
	if !missing || len(opts) < 2 {
		for i, o := range opts {
			l, w, err := im.Image(c, o)
			out[i] = Built{Opts: o, Layout: l, Warnings: w, Err: err}
		}
		return out
	}
	// Hold the listing from the first layout to the last.
	_, done, _ := im.listing(c)
	defer done()
	next := make(chan int, len(opts))
	for i := range opts {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range min(len(opts), runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				l, w, err := im.Image(c, opts[i])
				out[i] = Built{Opts: opts[i], Layout: l, Warnings: w, Err: err}
			}
		}()
	}
	wg.Wait()
	return out
}

// Image returns the image of commit c in opts's format (export-ignore
// honored, as git archive does), laying it out on first use.
func (im *Images) Image(c *Commit, opts imager.Options) (*imager.Layout, []imager.Warning, error) {
	key := imageKey{tree: c.Tree, opts: opts}
	im.mu.Lock()
	im.tick++
	e, ok := im.entries[key]
	if ok {
		e.used = im.tick
		im.mu.Unlock()
		<-e.done
		return e.layout, e.warnings, e.err
	}
	e = &imageEntry{done: make(chan struct{}), used: im.tick}
	im.entries[key] = e
	im.evictLocked()
	im.mu.Unlock()

	buildSlots <- struct{}{}
	start := time.Now()
	e.layout, e.warnings, e.err = im.build(c, opts)
	d := time.Since(start)
	<-buildSlots
	if im.OnBuild != nil {
		im.OnBuild(opts, d, e.err)
	}
	close(e.done)
	if e.err != nil {
		// Do not keep failures: the repository may be repaired or refetched.
		im.mu.Lock()
		if im.entries[key] == e {
			delete(im.entries, key)
		}
		im.mu.Unlock()
	}
	return e.layout, e.warnings, e.err
}

func (im *Images) build(c *Commit, opts imager.Options) (*imager.Layout, []imager.Warning, error) {
	tree, done, err := im.listing(c)
	defer done()
	if err != nil {
		return nil, nil, err
	}
	l, w, err := imager.Build(tree, im.repo, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("gitfs: %s image of %s: %w", formatName(opts.Format), c.ID, err)
	}
	return l, w, nil
}

// listing returns the listing of c's tree, shared with the layouts being
// made of it now; done ends this layout's use of it.
func (im *Images) listing(c *Commit) (*imager.Tree, func(), error) {
	im.mu.Lock()
	l := im.lists[c.Tree]
	if l == nil {
		l = &listing{done: make(chan struct{})}
		im.lists[c.Tree] = l
	}
	l.users++
	first := l.users == 1
	im.mu.Unlock()
	done := func() {
		im.mu.Lock()
		var save func()
		if l.users--; l.users == 0 {
			if im.lists[c.Tree] == l {
				delete(im.lists, c.Tree)
			}
			save, l.save = l.save, nil
		}
		im.mu.Unlock()
		if save != nil {
			// Saved once the layouts are made, not competing with them for
			// the cores; Close waits.
			im.repo.saves.Add(1)
			go func() {
				defer im.repo.saves.Done()
				save()
			}()
		}
	}
	if first {
		tree, save, err := im.repo.cachedTree(c, true, im.cacheDir)
		im.mu.Lock()
		l.tree, l.err = tree, err
		if err == nil {
			l.save = save
		}
		im.mu.Unlock()
		close(l.done)
	} else {
		<-l.done
	}
	return l.tree, done, l.err
}

func formatName(f imager.Format) string {
	if f == "" {
		return string(imager.FormatTar)
	}
	return string(f)
}

// evictLocked drops the least recently used finished layouts beyond max,
// leaving pinned ones.
func (im *Images) evictLocked() {
	for len(im.entries) > im.max {
		var oldKey imageKey
		var oldest *imageEntry
		for k, e := range im.entries {
			select {
			case <-e.done:
			default:
				continue // still being laid out
			}
			if im.pins.holds(e.layout) {
				continue
			}
			if oldest == nil || e.used < oldest.used {
				oldKey, oldest = k, e
			}
		}
		if oldest == nil {
			return
		}
		delete(im.entries, oldKey)
	}
}
