package main

import (
	"context"
	"log/slog"

	"github.com/gitblk/gitblk/gitfs/fusefs"
	"github.com/gitblk/gitblk/imager"
)

// mountExport mounts what a config's export serves: its one image, as
// image.FORMAT, and the tree it shows (decrypted files under their plain
// names for a decrypting export, read from memory).
func mountExport(ctx context.Context, ef *exportFlags, dir string, allowOther bool, log *slog.Logger) error {
	x, err := ef.openExport()
	if err != nil {
		return err
	}
	defer x.close()
	if allowOther && x.decrypts {
		// Every user of the host would read the decrypted files.
		return usagef("mount: --allow-other cannot be used with the decrypting export %q", ef.export)
	}
	logWarnings(log, x.commit, x.opts.Format, x.warnings)
	m, err := fusefs.Mount(dir, fusefs.Config{
		CommitID: x.commit.ID, Ref: x.rev, Time: x.commit.Time, Tree: x.tree, Blobs: x.blobs,
		Images: map[string]imager.Image{"image." + string(x.opts.Format): x.layout}, Logger: log, AllowOther: allowOther,
	})
	if err != nil {
		return err
	}
	log.Info("mounted", "dir", m.Dir(), "export", ef.export, "ref", x.rev, "commit", x.commit.ID)
	serveMount(ctx, m, log)
	return nil
}
