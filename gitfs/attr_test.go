package gitfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/testutil"
)

// attrFiles is the file list every export-ignore scenario starts from.
var attrFiles = []string{
	"README.md", "keep.md", "main.go", "app.log", "notes.txt", "with space.txt",
	"logs", "file1.c", "file2.c", "filex.c", "b.x", "a.x", "secret", "x.bak",
	"build/out.o", "build/sub/deep.o",
	"docs/guide.md", "docs/internal/a.txt", "docs/internal/x/y.txt", "docs/public/b.txt",
	"src/app.log", "src/tmp/t1", "src/a/tmp/t2", "src/keep.txt",
	"a/z", "a/b/z", "a/b/c/z", "a/y",
	"sub/x.txt", "sub/deep/x.txt", "sub/deep/y.txt", "sub/keep.md", "sub/other.md",
	"top-only", "nest/top-only", "ü/é.log", "ü/é.txt",
}

func TestExportIgnoreMatchesGitArchive(t *testing.T) {
	testutil.NeedTool(t, "tar", "tar")
	for _, tc := range []struct {
		name  string
		attrs map[string]string // path of an attributes file -> content
	}{
		{"basename", map[string]string{".gitattributes": "*.log export-ignore\n"}},
		{"slash pattern", map[string]string{".gitattributes": "docs/internal/* export-ignore\nsrc/*.log export-ignore\n"}},
		{"directory", map[string]string{".gitattributes": "build/ export-ignore\nlogs/ export-ignore\ndocs export-ignore\n"}},
		{"anchored", map[string]string{".gitattributes": "/top-only export-ignore\n"}},
		{"unanchored", map[string]string{".gitattributes": "top-only export-ignore\n"}},
		{"double star", map[string]string{".gitattributes": "**/tmp/** export-ignore\na/**/z export-ignore\n"}},
		{"double star dir", map[string]string{".gitattributes": "**/tmp export-ignore\n**/b export-ignore\n"}},
		{"leading double star", map[string]string{".gitattributes": "**/z export-ignore\n"}},
		{"nested overrides", map[string]string{
			".gitattributes":     "*.md export-ignore\n",
			"sub/.gitattributes": "keep.md -export-ignore\ndeep/x.txt export-ignore\n*.txt export-ignore\ndeep/y.txt !export-ignore\n",
		}},
		{"nested slash relative", map[string]string{"sub/.gitattributes": "deep/* export-ignore\n/x.txt export-ignore\n"}},
		{"last line wins", map[string]string{".gitattributes": "*.txt export-ignore\nkeep.txt -export-ignore\nsrc/keep.txt export-ignore\nnotes.txt -export-ignore\n"}},
		{"info attributes", map[string]string{
			".gitattributes":       "secret -export-ignore\n*.md export-ignore\n",
			".git/info/attributes": "secret export-ignore\nREADME.md !export-ignore\n",
		}},
		{"macro", map[string]string{".gitattributes": "[attr]noexport export-ignore -diff\n*.bak noexport\n*.x binary\n"}},
		{"classes", map[string]string{".gitattributes": "file[0-9].c export-ignore\n[!a].x export-ignore\n*[[:space:]]*.txt export-ignore\n"}},
		{"quoted and values", map[string]string{".gitattributes": "\"with space.txt\" export-ignore\nmain.go export-ignore=yes\n# comment\n\n  b.x   export-ignore\n"}},
		{"attributes file itself", map[string]string{".gitattributes": ".gitattributes export-ignore\nsub/.gitattributes export-ignore\n", "sub/.gitattributes": "other.md export-ignore\n"}},
		{"non-ascii", map[string]string{".gitattributes": "ü/*.log export-ignore\n"}},
		{"directory of ignored files stays", map[string]string{".gitattributes": "build/*.o export-ignore\nbuild/sub export-ignore\n"}},
		{"directory of ignored directories goes", map[string]string{".gitattributes": "docs/internal/* export-ignore\ndocs/public export-ignore\ndocs/guide.md export-ignore\n"}},
		{"whole subtree with attrs", map[string]string{".gitattributes": "sub export-ignore\n", "sub/.gitattributes": "keep.md -export-ignore\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testutil.NewRepo(t)
			for _, f := range attrFiles {
				testutil.WriteFile(t, dir, f, []byte(f+"\n"), 0o644)
			}
			for p, content := range tc.attrs {
				testutil.WriteFile(t, dir, p, []byte(content), 0o644)
			}
			commit := testutil.CommitAll(t, dir, "attrs")
			want := archiveList(t, dir, commit)
			tr := listTree(t, dir, commit, true)
			got := entryList(tr)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("export-ignore differs from git archive:\n%s", listDiff(got, want))
			}
			all := listTree(t, dir, commit, false)
			if len(all.Entries) <= len(tr.Entries) && tc.name != "quoted and values" {
				t.Errorf("nothing was ignored: %d entries of %d", len(tr.Entries), len(all.Entries))
			}
		})
	}
}

// archiveList is the sorted member list of git archive's tar.
func archiveList(t *testing.T, dir, commit string) []string {
	t.Helper()
	cmd := exec.Command("sh", "-c", "git archive --format=tar "+commit+" | tar -t --quoting-style=literal -f -")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git archive | tar -t: %v", err)
	}
	list := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	sort.Strings(list)
	return list
}

// entryList names entries as tar -t does (directories and submodules
// end in "/"), sorted.
func entryList(tr *imager.Tree) []string {
	var list []string
	for _, e := range tr.Entries {
		p := e.Path
		if e.Kind == imager.KindDir || e.Kind == imager.KindSubmodule {
			p += "/"
		}
		list = append(list, p)
	}
	sort.Strings(list)
	return list
}

func listDiff(got, want []string) string {
	g, w := map[string]bool{}, map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	for _, s := range want {
		w[s] = true
	}
	var b strings.Builder
	for _, s := range got {
		if !w[s] {
			b.WriteString("  only ours: " + s + "\n")
		}
	}
	for _, s := range want {
		if !g[s] {
			b.WriteString("  only git's: " + s + "\n")
		}
	}
	return b.String()
}

func TestPatternsMatchGitCheckAttr(t *testing.T) {
	// Pattern and path pairs for git's wildmatch rules; each answer comes
	// from git itself (`git check-attr`), none is written here.
	cases := []struct{ pat, path string }{
		{"foo", "foo"}, {"foo", "bar"}, {"foo", "a/foo"}, {"*", "foo/bar"}, {"/*", "foo/bar"},
		{"f*o", "foo"}, {"f?o", "fxo"}, {"a/f?o", "a/fxo"}, {"a?b", "a/b"}, {"a*b", "a/b"},
		{"**/foo", "foo"}, {"**/foo", "a/b/foo"}, {"foo/**", "foo/a/b"}, {"a/**/b", "a/b"},
		{"a/**/b", "a/x/y/b"}, {"a/**b", "a/x/b"}, {"a/**b", "a/xb"}, {"[a-c]x", "bx"},
		{"[!a-c]x", "bx"}, {"[^a-c]x", "dx"}, {"[]]", "]"}, {"[!]]", "a"}, {"[[:digit:]]", "5"},
		{"[[:alpha:]]", "5"}, {"[a-]", "-"}, {`\*`, "*"}, {`\*`, "x"}, {"a[/]b", "a/b"},
		{"*.c", "a/b.c"}, {"/*.c", "a/b.c"}, {"a/*.c", "a/b.c"}, {"[[:bogus:]]", "b"},
		{"[abc", "a"}, {"a[", "a["}, {"**", "a/b"}, {"x**y", "xay"}, {"a/x**y", "a/x/y"},
		{"d/", "d"}, {"*[[:upper:]]", "aB"}, {"[[:xdigit:]][[:punct:]]", "f!"}, {"[a-c-e]", "-"},
	}
	dir := t.TempDir()
	testutil.Git(t, dir, "init", "-q")
	for _, tc := range cases {
		if err := os.WriteFile(filepath.Join(dir, ".gitattributes"), []byte(tc.pat+" export-ignore\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		want := strings.HasSuffix(testutil.Git(t, dir, "check-attr", "export-ignore", "--", tc.path), ": set")
		st := &attrStack{}
		st.push(parseAttrFile("", []byte(tc.pat+" export-ignore\n"), true))
		if got := st.exportIgnored(tc.path, false); got != want {
			t.Errorf("pattern %q, path %q: ignored = %v, git check-attr says %v", tc.pat, tc.path, got, want)
		}
	}
}
