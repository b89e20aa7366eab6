package gitfs

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// ErrAmbiguousRevision: a short object id names more than one commit.
var ErrAmbiguousRevision = errors.New("gitfs: ambiguous revision")

// Resolve resolves rev (a branch, tag, HEAD, a full or short commit id,
// refs/..., with ~N and ^N suffixes) to a commit. Refs are re-read on
// every call, so a moved ref is seen without reopening. A short id that
// more than one commit starts with is refused, naming them (wrapping both
// ErrUnknownRevision and ErrAmbiguousRevision).
func (r *Repo) Resolve(rev string) (*Commit, error) {
	var c *Commit
	var ambiguous error
	err := r.store.WithGit(func(gr *gogit.Repository) error {
		if ambiguous = ambiguousShortID(gr, rev); ambiguous != nil {
			return nil
		}
		h, err := gr.ResolveRevision(plumbing.Revision(rev))
		if err != nil {
			nested, ok := resolveNestedTag(gr, rev)
			if !ok {
				return err
			}
			h = &nested
		}
		co, err := gr.CommitObject(*h)
		if err != nil {
			return err
		}
		c = &Commit{ID: co.Hash.String(), Tree: co.TreeHash.String(), Time: co.Committer.When, Rev: rev}
		return nil
	})
	if errors.Is(err, ErrClosed) {
		return nil, err
	}
	if ambiguous != nil {
		return nil, fmt.Errorf("%w %q in %s: %w", ErrUnknownRevision, rev, r.path, ambiguous)
	}
	if err != nil {
		return nil, fmt.Errorf("%w %q in %s (%v); refs: %s", ErrUnknownRevision, rev, r.path, err, r.someRefs())
	}
	return c, nil
}

// maxTagDepth bounds the tags peeled to reach a commit.
const maxTagDepth = 16

// minShortID is the shortest object id prefix git takes (MINIMUM_ABBREV
// in git's object-name.c).
const minShortID = 4

// ambiguousShortID returns an error when rev starts with (before any ~, ^,
// @ or :) a short object id that several commits, or tags of commits,
// start with. That is git's rule when it wants a commit (object-name.c:
// get_short_oid with GET_OID_COMMITTISH, as in git rev-parse X^{commit}):
// it counts only the commit-ish candidates, refuses the name when there
// are several ("short object ID X is ambiguous") and lists them. A ref of
// that name comes first, as in git.
func ambiguousShortID(gr *gogit.Repository, rev string) error {
	name := rev
	if i := strings.IndexAny(rev, "~^@:"); i >= 0 {
		name = rev[:i]
	}
	if len(name) < minShortID || len(name) >= 2*hashLen || !isHex(name) {
		return nil
	}
	for _, ref := range dwimRefs(name) {
		if _, err := gr.Reference(plumbing.ReferenceName(ref), false); err == nil {
			return nil
		}
	}
	var candidates []string
	for _, h := range hashesWithPrefix(gr, name) {
		if kind, ok := commitish(gr, h); ok {
			candidates = append(candidates, h.String()+" "+kind)
		}
	}
	if len(candidates) < 2 {
		return nil
	}
	sort.Strings(candidates)
	return fmt.Errorf("%w: short object id %s is ambiguous; the candidates are: %s",
		ErrAmbiguousRevision, name, strings.Join(candidates, ", "))
}

// dwimRefs are the refs a short name may mean, in git's order (git help
// revisions: <refname>).
func dwimRefs(name string) []string {
	return []string{name, "refs/" + name, "refs/tags/" + name, "refs/heads/" + name, "refs/remotes/" + name, "refs/remotes/" + name + "/HEAD"}
}

// hashesWithPrefix lists the objects whose hex ids start with prefix.
func hashesWithPrefix(gr *gogit.Repository, prefix string) []plumbing.Hash {
	st, ok := gr.Storer.(interface {
		HashesWithPrefix(prefix []byte) ([]plumbing.Hash, error)
	})
	if !ok {
		return nil
	}
	prefix = strings.ToLower(prefix)
	b, err := hex.DecodeString(prefix[:len(prefix)&^1])
	if err != nil {
		return nil
	}
	all, err := st.HashesWithPrefix(b)
	if err != nil {
		return nil
	}
	var hs []plumbing.Hash
	for _, h := range all {
		if strings.HasPrefix(h.String(), prefix) && !slices.Contains(hs, h) {
			hs = append(hs, h)
		}
	}
	return hs
}

// commitish says whether object h is a commit, or a tag that peels to one.
func commitish(gr *gogit.Repository, h plumbing.Hash) (kind string, ok bool) {
	if _, err := gr.CommitObject(h); err == nil {
		return "commit", true
	}
	for depth := 0; depth < maxTagDepth; depth++ {
		tag, err := gr.TagObject(h)
		if err != nil {
			break
		}
		if tag.TargetType == plumbing.CommitObject {
			return "tag", true
		}
		h = tag.Target
	}
	return "", false
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// resolveNestedTag resolves rev when it names, as a ref or a full object
// id, a tag of a tag (git tag -a t2 t1), which go-git's ResolveRevision
// refuses ("unsupported object type") and git peels. ok is false when rev
// is not such a tag.
func resolveNestedTag(gr *gogit.Repository, rev string) (h plumbing.Hash, ok bool) {
	found := false
	for _, name := range dwimRefs(rev) {
		if ref, err := gr.Reference(plumbing.ReferenceName(name), true); err == nil {
			h, found = ref.Hash(), true
			break
		}
	}
	if !found && len(rev) == 40 && plumbing.IsHash(rev) {
		h, found = plumbing.NewHash(rev), true
	}
	if !found {
		return h, false
	}
	for depth := 0; depth < maxTagDepth; depth++ {
		tag, err := gr.TagObject(h)
		if err != nil {
			return h, depth > 1 // peeled a tag of a tag
		}
		h = tag.Target
	}
	return h, false
}

// someRefs names a few existing refs, for error messages.
func (r *Repo) someRefs() string {
	var names []string
	_ = r.store.WithGit(func(gr *gogit.Repository) error {
		names = names[:0]
		if h, err := gr.Storer.Reference(plumbing.HEAD); err == nil {
			if h.Type() == plumbing.SymbolicReference {
				names = append(names, "HEAD -> "+h.Target().Short())
			} else {
				names = append(names, "HEAD")
			}
		}
		it, err := gr.Storer.IterReferences()
		if err != nil {
			return nil
		}
		defer it.Close()
		var refs []string
		_ = it.ForEach(func(ref *plumbing.Reference) error {
			if ref.Name() != plumbing.HEAD {
				refs = append(refs, ref.Name().String())
			}
			return nil
		})
		sort.Strings(refs)
		names = append(names, refs...)
		return nil
	})
	if len(names) == 0 {
		return "none"
	}
	more := ""
	if len(names) > maxRefsListed {
		more = fmt.Sprintf(" and %d more", len(names)-maxRefsListed)
		names = names[:maxRefsListed]
	}
	return strings.Join(names, ", ") + more
}

// maxRefsListed is how many existing refs an unknown-revision error names.
const maxRefsListed = 8
