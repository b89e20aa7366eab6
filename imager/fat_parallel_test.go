package imager

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// parallelFATTree is a tree big enough for fatTree's parallel path, with
// every kind of per-directory problem and alias in several directories:
// names equal but for case, directories over maxDirEntries, ~N aliases
// (past ~9 too), exact and Mirage 8.3 names taken twice, bad names, empty
// directories and one entry listed without its parent.
func parallelFATTree() *Tree {
	m := newFmem()
	for d := 0; d < 60; d++ {
		dir := fmt.Sprintf("top %02d", d)
		switch d % 6 {
		case 0: // ~N aliases, some colliding with a literal 8.3 name
			for f := 0; f < 120; f++ {
				m.file(fmt.Sprintf("%s/Long File Name %d.txt", dir, f), "x")
			}
			m.file(dir+"/LONGFI~3.TXT", "x")
		case 1: // equal but for case, ASCII and not
			m.file(dir+"/Readme.TXT", "x").file(dir+"/README.txt", "x").file(dir+"/readme.txt", "x")
			m.file(dir+"/Äb", "x").file(dir+"/äB", "x")
			for f := 0; f < 40; f++ {
				m.file(fmt.Sprintf("%s/f%02d.c", dir, f), "x")
			}
		case 2: // Mirage 8.3 names taken twice, bad names
			m.file(dir+"/X..Y", "x").file(dir+"/X.Y", "x").file(dir+"/ A.B", "x")
			m.file(dir+"/a:b", "x").file(dir+"/trailing.", "x")
		case 3: // many small directories, some empty
			for s := 0; s < 30; s++ {
				m.file(fmt.Sprintf("%s/s%02d/only.txt", dir, s), "x")
				m.dir(fmt.Sprintf("%s/empty%02d", dir, s))
			}
		case 4: // plain 8.3 names
			for f := 0; f < 90; f++ {
				m.file(fmt.Sprintf("%s/sub/f%02d.txt", dir, f), "x")
			}
		case 5:
			m.sub(dir + "/module")
		}
	}
	// Two directories over maxDirEntries: 3400 names of 20 entries each.
	for _, dir := range []string{"top 17/huge", "top 44"} {
		for f := 0; f < 3400; f++ {
			m.file(fmt.Sprintf("%s/%s %04d", dir, strings.Repeat("huge file name ", 16), f), "x")
		}
	}
	tr := m.tree()
	tr.Entries = append(tr.Entries, Entry{Path: "zz missing/orphan", Kind: KindFile, Size: 1, Blob: BlobID{9}})
	return tr
}

// TestFATTreeParallel checks that fatTree's result does not depend on how
// many goroutines check the directories: the same problems in the same
// order, the same aliases and entry counts.
func TestFATTreeParallel(t *testing.T) {
	tr := parallelFATTree()
	if n := len(tr.Entries) + 1; n < fatParallelMin {
		t.Fatalf("%d nodes: below fatParallelMin %d", n, fatParallelMin)
	}
	want, wantP := fatTreeOn(tr, 1)
	// The sequential result has what the tree was made to have.
	count := func(substr string) int {
		n := 0
		for _, p := range wantP {
			if strings.Contains(p.Msg, substr) {
				n++
			}
		}
		return n
	}
	if got := count("but for case"); got != 10*3 {
		t.Errorf("%d case problems, want 30", got)
	}
	if got := count("32-byte entries"); got != 2 {
		t.Errorf("%d over-long directories, want 2", got)
	}
	if got := count("without its parent"); got != 1 {
		t.Errorf("%d orphans, want 1", got)
	}
	tilde, dupShort := 0, 0
	for _, n := range want.nodes {
		if strings.Contains(string(n.short[:]), "~1") {
			tilde++
		}
		if n.mirage == fatMirageDupShort {
			dupShort++
		}
	}
	if tilde < 20 || dupShort < 10 {
		t.Errorf("%d ~1x aliases, %d Mirage duplicates: want many", tilde, dupShort)
	}

	for _, workers := range []int{2, 3, 4, 7, 64} {
		got, gotP := fatTreeOn(tr, workers)
		if !slices.Equal(gotP, wantP) {
			t.Errorf("%d workers: %d problems, want %d", workers, len(gotP), len(wantP))
			for i := range min(len(gotP), len(wantP)) {
				if gotP[i] != wantP[i] {
					t.Errorf("first difference at %d: %v, want %v", i, gotP[i], wantP[i])
					break
				}
			}
		}
		if !slices.Equal(got.nodes, want.nodes) {
			for i := range min(len(got.nodes), len(want.nodes)) {
				if got.nodes[i] != want.nodes[i] {
					t.Errorf("%d workers: node %d (%s): %+v, want %+v", workers, i, want.pathOf(i), got.nodes[i], want.nodes[i])
					break
				}
			}
		}
		if !slices.Equal(got.dirs, want.dirs) || !slices.Equal(got.kids, want.kids) || got.names != want.names {
			t.Errorf("%d workers: directories differ", workers)
		}
	}
	// fatTree itself takes the parallel path here when it can.
	if got, gotP := fatTree(tr); !slices.Equal(gotP, wantP) || !slices.Equal(got.nodes, want.nodes) {
		t.Errorf("fatTree differs from the sequential result")
	}
}

// TestFATSplitDirs checks the ranges directories are checked in: they
// cover every directory in order, cut none, and balance the children.
func TestFATSplitDirs(t *testing.T) {
	tr := parallelFATTree()
	ft, _ := fatTreeOn(tr, 1)
	var dirs []uint32
	for i := range ft.nodes {
		if ft.nodes[i].dir {
			dirs = append(dirs, uint32(i))
		}
	}
	weight := func(ds []uint32) (w, most int64) {
		for _, d := range ds {
			k := int64(ft.dirOf(int(d)).nkids) + 1
			w += k
			most = max(most, k)
		}
		return w, most
	}
	total, most := weight(dirs)
	for _, n := range []int{1, 2, 3, 4, 7, 64} {
		ends := ft.splitDirs(dirs, n)
		if len(ends) < 1 || len(ends) > n || ends[len(ends)-1] != len(dirs) {
			t.Fatalf("%d ranges: ends %v of %d directories", n, ends, len(dirs))
		}
		start := 0
		for _, end := range ends {
			if end < start {
				t.Fatalf("%d ranges: ends %v go back", n, ends)
			}
			// A range is at most its share plus one directory.
			if w, _ := weight(dirs[start:end]); w > total/int64(len(ends))+most {
				t.Errorf("%d ranges: range %d..%d weighs %d of %d (largest directory %d)", n, start, end, w, total, most)
			}
			start = end
		}
		if n > 1 && ends[0] == len(dirs) {
			t.Errorf("%d ranges: all in the first (%v)", n, ends)
		}
	}
	// Degenerate inputs: no directory, one, one huge among small ones.
	if ends := ft.splitDirs(nil, 2); !slices.Equal(ends, []int{0}) {
		t.Errorf("no directories: %v", ends)
	}
	if ends := ft.splitDirs(dirs[:1], 4); !slices.Equal(ends, []int{1}) {
		t.Errorf("one directory: %v", ends)
	}
}

// TestFATWorkers checks that small trees stay on one goroutine.
func TestFATWorkers(t *testing.T) {
	if n := fatWorkers(fatParallelMin - 1); n != 1 {
		t.Errorf("small tree: %d workers", n)
	}
	if n, want := fatWorkers(1<<20), min(runtime.GOMAXPROCS(0), fatMaxWorkers); n != want {
		t.Errorf("big tree: %d workers, want %d", n, want)
	}
	// An empty tree takes the parallel path's split without panicking.
	if _, p := fatTreeOn(&Tree{}, 4); len(p) != 0 {
		t.Errorf("empty tree: %v", p)
	}
}

// BenchmarkFATTreeCorpus times fatTree alone on the many-files corpus,
// its directories checked on one goroutine and on two.
func BenchmarkFATTreeCorpus(b *testing.B) {
	tr := corpusFmem().tree()
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fatTreeOn(tr, workers)
			}
		})
	}
}

// TestFATCheckDirsPanic checks that a panic on a goroutine checking
// directories reaches the caller instead of ending the process.
func TestFATCheckDirsPanic(t *testing.T) {
	ft, _ := fatTreeOn(parallelFATTree(), 1)
	var dirs []uint32
	for i := range ft.nodes {
		if ft.nodes[i].dir {
			dirs = append(dirs, uint32(i))
		}
	}
	// The last directory claims children past the end of the index: it is
	// a range of its own, checked on a goroutine, and panics there.
	ft.dirs[ft.nodes[dirs[len(dirs)-1]].size].nkids = 1 << 30
	defer func() {
		if recover() == nil {
			t.Errorf("no panic")
		}
	}()
	ft.checkDirs(dirs, 2, nil)
}
