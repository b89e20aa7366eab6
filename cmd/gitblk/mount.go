package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/gitfs/fusefs"
	"github.com/gitblk/gitblk/imager"
)

const mountExamples = `  gitblk mount . HEAD /mnt/site &
  tar -tvf /mnt/site/image.tar
  fsck.fat -n /mnt/site/image.fat
  diff -r /mnt/site/tree ./checkout
  fusermount3 -u /mnt/site
`

func runMount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	preloadInflater()
	fs := newFlags("mount", "mount [flags] REPO REF MOUNTPOINT\n       gitblk mount --config FILE --export NAME MOUNTPOINT", mountExamples, stderr)
	var cf commonFlags
	cf.register(fs)
	allowOther := fs.Bool("allow-other", false, "let other users read the mount (needs user_allow_other in /etc/fuse.conf for non-root)")
	var ef exportFlags
	ef.register(fs)
	pos, err := ef.parse(fs, args, 1, 3)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cf.setup(log)
	if ef.config != "" {
		return mountExport(ctx, &ef, pos[0], *allowOther, log)
	}
	o, err := cf.openRev(pos[0], pos[1])
	if err != nil {
		return err
	}
	defer o.repo.Close()
	repo, c := o.repo, o.commit
	tree, err := repo.CachedTree(c, false, o.cacheDir)
	if err != nil {
		return err
	}
	images := gitfs.NewImages(repo, 2, o.cacheDir)
	files := map[string]imager.Image{}
	for _, f := range []imager.Format{imager.FormatTar, imager.FormatFAT} {
		opts, err := cf.options(string(f))
		if err != nil {
			return err
		}
		l, ws, err := images.Image(c, opts)
		if err != nil {
			// A tree FAT cannot hold still has a tar image and a tree.
			log.Warn("image left out of the mount", "file", "image."+string(f), "err", err)
			continue
		}
		logWarnings(log, c, f, ws)
		files["image."+string(f)] = l
	}
	m, err := fusefs.Mount(pos[2], fusefs.Config{
		CommitID: c.ID, Ref: pos[1], Time: c.Time, Tree: tree, Blobs: repo,
		Images: files, Logger: log, AllowOther: *allowOther,
	})
	if err != nil {
		return err
	}
	log.Info("mounted", "dir", m.Dir(), "ref", pos[1], "commit", c.ID)
	serveMount(ctx, m, log)
	return nil
}

// serveMount serves m until it is unmounted: by ctx ending (a signal) or
// by fusermount3 -u.
func serveMount(ctx context.Context, m *fusefs.Mounted, log *slog.Logger) {
	go func() {
		<-ctx.Done()
		if err := m.Unmount(); err != nil {
			// Busy: files are open under the mount. Keep serving them.
			log.Warn("cannot unmount yet: close the files open under it, or detach it lazily with fusermount3 -u -z",
				"dir", m.Dir(), "err", err)
		}
	}()
	m.Wait()
	log.Info("unmounted", "dir", m.Dir())
}
