package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progressMin is the image size below which no bar is worth drawing.
const progressMin = 64 << 20

// progress draws a one-line progress bar on a terminal. A nil *progress
// draws nothing, so callers need not check.
type progress struct {
	w     io.Writer
	total int64
	start time.Time
	last  time.Time
}

// newProgress returns a bar on w when w is a terminal and the work is big
// enough to be worth one; else nil.
func newProgress(w io.Writer, total int64) *progress {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) || total < progressMin {
		return nil
	}
	now := time.Now()
	return &progress{w: f, total: total, start: now}
}

// isTerminal reports whether f is a terminal: not merely a character
// device, which /dev/null is too.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func (p *progress) set(n int64) {
	if p == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond && n < p.total {
		return
	}
	p.last = now
	const width = 30
	frac := float64(n) / float64(p.total)
	bar := strings.Repeat("=", int(frac*width)) + strings.Repeat(" ", width-int(frac*width))
	rate := float64(n) / now.Sub(p.start).Seconds() / (1 << 20)
	fmt.Fprintf(p.w, "\r[%s] %5.1f%% %d/%d MiB %.0f MiB/s", bar, frac*100, n>>20, p.total>>20, rate)
}

func (p *progress) done() {
	if p == nil {
		return
	}
	p.set(p.total)
	fmt.Fprintln(p.w)
}
