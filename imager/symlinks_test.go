package imager

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// listing renders entries as "path kind size blob-prefix" lines.
func listing(es []Entry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s %s %d %s\n", e.Path, e.Kind, e.Size, e.Blob.String()[:8])
	}
	return b.String()
}

// checkOrder fails unless es is in git's tree order without duplicates
// and every entry's parent directory precedes it.
func checkOrder(t *testing.T, es []Entry) {
	t.Helper()
	seen := map[string]Kind{}
	for i, e := range es {
		if i > 0 && gitOrderKey(es[i-1]) >= gitOrderKey(e) {
			t.Errorf("entry %d %q after %q: not in git order", i, e.Path, es[i-1].Path)
		}
		if j := strings.LastIndexByte(e.Path, '/'); j >= 0 {
			if k, ok := seen[e.Path[:j]]; !ok || k != KindDir {
				t.Errorf("entry %q before its directory", e.Path)
			}
		}
		seen[e.Path] = e.Kind
	}
}

func warned(ws []Warning, p, sub string) bool {
	for _, w := range ws {
		if w.Path == p && strings.Contains(w.Msg, sub) {
			return true
		}
	}
	return false
}

func TestFollowSymlinks(t *testing.T) {
	m := newFmem().
		file("f", "file f").
		exe("run.sh", "#!/bin/sh\n").
		file("v2/a", "a in v2").
		file("v2/sub/b", "b in v2").
		link("v2/up", "../f").         // relative to v2, even inside the copy
		link("latest", "v2").          // directory link: copied, sorted as "latest/"
		file("latest-x", "x").         // sorts before "latest/" but after "latest"
		file("latest.txt", "t").       // idem
		link("lf", "f").               // file
		link("lx", "run.sh").          // executable kind kept
		link("chain1", "chain2").      // chain
		link("chain2", "./v2//sub/b"). // odd but valid spelling
		link("d/rel", "../v2/a").      // .. inside the tree
		link("d/via", "../latest/a").  // a link inside the path
		link("dangling", "nope").
		link("abs", "/etc/passwd").
		link("outside", "../x").
		link("d/outside2", "../../f").
		link("loop1", "loop2").
		link("loop2", "loop1").
		link("d/self", "..").    // copy would contain itself
		link("d/dot", ".").      // idem
		link("notdir", "f/").    // a file is not a directory
		link("intofile", "f/x"). // idem
		link("mod", "m").        // to a submodule
		link("empty", "").       // empty target
		sub("m")
	tr := m.tree()
	got, warns := FollowSymlinks(tr)
	checkOrder(t, got.Entries)
	by := map[string]Entry{}
	for _, e := range got.Entries {
		if e.Kind == KindSymlink {
			t.Errorf("symlink %q left in output", e.Path)
		}
		by[e.Path] = e
	}
	src := map[string]Entry{}
	for _, e := range tr.Entries {
		src[e.Path] = e
	}
	same := func(p, target string, k Kind) {
		t.Helper()
		e, ok := by[p]
		if !ok {
			t.Errorf("%s missing from output", p)
			return
		}
		want := src[target]
		if e.Kind != k || e.Blob != want.Blob || e.Size != want.Size {
			t.Errorf("%s = %v %d %s, want %v %d %s (%s)", p, e.Kind, e.Size, e.Blob, k, want.Size, want.Blob, target)
		}
	}
	same("lf", "f", KindFile)
	same("lx", "run.sh", KindExecutable)
	same("chain1", "v2/sub/b", KindFile)
	same("d/rel", "v2/a", KindFile)
	same("d/via", "v2/a", KindFile)
	same("latest/a", "v2/a", KindFile)
	same("latest/sub/b", "v2/sub/b", KindFile)
	same("latest/up", "f", KindFile)
	same("v2/up", "f", KindFile)
	same("mod", "m", KindSubmodule)
	if by["latest"].Kind != KindDir || by["latest/sub"].Kind != KindDir {
		t.Errorf("latest and latest/sub should be directories:\n%s", listing(got.Entries))
	}
	for p, why := range map[string]string{
		"dangling":   "does not exist",
		"abs":        "absolute",
		"outside":    "outside the tree",
		"d/outside2": "outside the tree",
		"loop1":      "too many levels",
		"loop2":      "too many levels",
		"d/self":     "cycle",
		"d/dot":      "cycle",
		"notdir":     "not a directory",
		"intofile":   "not a directory",
		"empty":      "empty target",
	} {
		if _, ok := by[p]; ok {
			t.Errorf("%s should be dropped", p)
		}
		if !warned(warns, p, why) {
			t.Errorf("no warning for %s saying %q; warnings: %v", p, why, warns)
		}
	}
	if len(warns) != 11 {
		t.Errorf("%d warnings, want 11: %v", len(warns), warns)
	}
	// The input is untouched.
	if src["lf"].Kind != KindSymlink {
		t.Error("input modified")
	}
}

// TestFollowSymlinksIndirectCycle: a/l -> ../b and b/l -> ../a copy each
// other once, then the cycle is cut with a warning.
func TestFollowSymlinksIndirectCycle(t *testing.T) {
	tr := newFmem().file("a/x", "x").link("a/l", "../b").file("b/y", "y").link("b/l", "../a").tree()
	got, warns := FollowSymlinks(tr)
	checkOrder(t, got.Entries)
	want := "a dir\na/l dir\na/l/l!\na/l/y file\na/x file\nb dir\nb/l dir\nb/l/l!\nb/l/x file\nb/y file\n"
	var b strings.Builder
	for _, e := range got.Entries {
		fmt.Fprintf(&b, "%s %s\n", e.Path, e.Kind)
	}
	gotS := b.String()
	// a/l/l and b/l/l are the cut links: absent from the output.
	want = strings.ReplaceAll(want, "a/l/l!\n", "")
	want = strings.ReplaceAll(want, "b/l/l!\n", "")
	if gotS != want {
		t.Errorf("got\n%swant\n%s", gotS, want)
	}
	if !warned(warns, "a/l/l", "cycle") || !warned(warns, "b/l/l", "cycle") || len(warns) != 2 {
		t.Errorf("warnings %v", warns)
	}
}

// TestFollowSymlinksBounded: links that double at every level would copy
// 2^20 directories; copies stop at the budget with warnings.
func TestFollowSymlinksBounded(t *testing.T) {
	m := newFmem()
	const levels = 20
	for i := 0; i < levels; i++ {
		m.link(fmt.Sprintf("d%02d/l1", i), fmt.Sprintf("../d%02d", i+1))
		m.link(fmt.Sprintf("d%02d/l2", i), fmt.Sprintf("../d%02d", i+1))
	}
	m.file(fmt.Sprintf("d%02d/end", levels), "end")
	tr := m.tree()
	got, warns := FollowSymlinks(tr)
	checkOrder(t, got.Entries)
	limit := copyBudgetFactor*len(tr.Entries) + minCopyBudget
	if len(got.Entries) > len(tr.Entries)+limit {
		t.Errorf("%d entries out of %d in: over the budget %d", len(got.Entries), len(tr.Entries), limit)
	}
	if !warned(warns, "d00/l1", "exceed") {
		t.Errorf("no budget warning for d00/l1: %d warnings, first %v", len(warns), warns[:min(3, len(warns))])
	}
	// Deep levels are small enough to copy whole.
	found := false
	for _, e := range got.Entries {
		if e.Path == fmt.Sprintf("d%02d/l1/l2/end", levels-2) {
			found = true
		}
	}
	if !found {
		t.Errorf("d%02d/l1/l2/end missing; %d entries, warnings %v", levels-2, len(got.Entries), warns)
	}
}

func TestSkipSymlinks(t *testing.T) {
	tr := newFmem().file("a/f", "f").link("a/l", "f").link("top", "a").file("z", "z").tree()
	got, warns := SkipSymlinks(tr)
	checkOrder(t, got.Entries)
	if g, w := listing(got.Entries), listing([]Entry{tr.Entries[0], tr.Entries[1], tr.Entries[4]}); g != w {
		t.Errorf("got\n%swant\n%s", g, w)
	}
	if len(warns) != 2 || !warned(warns, "a/l", "skipped") || !warned(warns, "top", "skipped") {
		t.Errorf("warnings %v", warns)
	}
}

// TestFollowSymlinksMissingDirs: a listing without directory entries gets
// them, in order.
func TestFollowSymlinksMissingDirs(t *testing.T) {
	tr := &Tree{Entries: []Entry{{Path: "x/y/z", Kind: KindFile}, {Path: "x-a", Kind: KindFile}}}
	got, _ := FollowSymlinks(tr)
	checkOrder(t, got.Entries)
	if len(got.Entries) != 4 {
		t.Errorf("got\n%s", listing(got.Entries))
	}
}

// TestPlainGitOrder: the shortcut that spares indexing a tree without
// symlinks takes it only when the index would list it unchanged: on
// random trees in git's order (taken), and on the same trees shuffled,
// with an entry dropped, duplicated or turned into a symlink (taken only
// if the index agrees).
func TestPlainGitOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for round := 0; round < 300; round++ {
		var files []memFile
		for _, f := range randomFiles(rng, 1+rng.Intn(40)) {
			if f.Kind != KindSymlink {
				files = append(files, f)
			}
		}
		if len(files) == 0 {
			continue
		}
		tree, _ := memTree(t, files, "", testTime)
		if !plainGitOrder(tree) {
			t.Fatalf("round %d: a symlink-free tree in git order is not taken:\n%s", round, listing(tree.Entries))
		}
		es := slices.Clone(tree.Entries)
		switch i := rng.Intn(len(es)); rng.Intn(4) {
		case 0:
			j := rng.Intn(len(es))
			es[i], es[j] = es[j], es[i]
		case 1:
			es = slices.Delete(es, i, i+1)
		case 2:
			es = slices.Insert(es, i, es[i])
		case 3:
			if es[i].Kind != KindDir {
				es[i].Kind, es[i].Target, es[i].Size = KindSymlink, "x", 1
			}
		}
		m := &Tree{Time: testTime, Entries: es}
		if got, want := plainGitOrder(m), listing(newTreeIndex(m).order) == listing(es) && !slices.ContainsFunc(es, func(e Entry) bool { return e.Kind == KindSymlink }); got && !want {
			t.Fatalf("round %d: taken, but the index lists it otherwise:\n%s", round, listing(es))
		}
		if f, _ := FollowSymlinks(m); plainGitOrder(m) && f != m {
			t.Fatalf("round %d: FollowSymlinks copied a tree that needs no change", round)
		}
	}
	// A directory compares as its name and "/": "a-b" sorts before the
	// directory "a", whose contents sort as "a/...".
	tr := &Tree{Entries: []Entry{{Path: "a-b"}, {Path: "a", Kind: KindDir}, {Path: "a/x"}, {Path: "a0"}}}
	if !plainGitOrder(tr) {
		t.Error("a-b, a/, a0 in git order not taken")
	}
	tr.Entries[0], tr.Entries[1] = tr.Entries[1], tr.Entries[0]
	if plainGitOrder(tr) {
		t.Error("a/ before a-b taken")
	}
}

// TestGitNameLess: GitNameLess orders names as git orders tree entries
// (a directory as its name and "/"), checked against comparing those
// strings, for names that are prefixes of one another, equal, or apart,
// directories or not.
func TestGitNameLess(t *testing.T) {
	names := []string{"", "a", "a-", "a.b", "a/", "a0", "ab", "abc", "b", "\xff", "a\x00", "A"}
	for _, a := range names {
		for _, b := range names {
			for _, aDir := range []bool{false, true} {
				for _, bDir := range []bool{false, true} {
					ka, kb := a, b
					if aDir {
						ka += "/"
					}
					if bDir {
						kb += "/"
					}
					if got, want := GitNameLess(a, aDir, b, bDir), ka < kb; got != want {
						t.Errorf("GitNameLess(%q, %t, %q, %t) = %t, want %t", a, aDir, b, bDir, got, want)
					}
				}
			}
		}
	}
}
