package gitfs

import (
	"fmt"
	"sort"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Refs returns the full names of every ref (branches, tags, remotes,
// others), sorted, read afresh from the repository: what `gitblk serve
// --refs` matches its patterns against.
func (r *Repo) Refs() ([]string, error) {
	var names []string
	err := r.store.WithGit(func(gr *gogit.Repository) error {
		names = names[:0]
		it, err := gr.Storer.IterReferences()
		if err != nil {
			return err
		}
		defer it.Close()
		return it.ForEach(func(ref *plumbing.Reference) error {
			if ref.Name() != plumbing.HEAD {
				names = append(names, ref.Name().String())
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("gitfs: list refs of %s: %w", r.path, err)
	}
	sort.Strings(names)
	return names, nil
}
