package main

import (
	"flag"
	"fmt"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/secrets"
)

// exportFlags are build's and mount's --config FILE --export NAME: the
// image a config's export serves, instead of REPO REF.
type exportFlags struct {
	config string
	export string
}

func (f *exportFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "with --export: the image that this serve config file's export serves, instead of REPO REF")
	fs.StringVar(&f.export, "export", "", "with --config: the export name, as a client asks for it (NAME, NAME/REF, NAME/REF:FORMAT)")
}

// parse parses args with fs and returns the positional arguments, after
// checking that the flags go together and that there are withConfig of
// them with --config, else without.
func (f *exportFlags) parse(fs *flag.FlagSet, args []string, withConfig, without int) ([]string, error) {
	pos, err := parsePositionals(fs, args)
	if err != nil {
		return nil, err
	}
	return pos, f.check(fs, pos, withConfig, without)
}

func (f *exportFlags) check(fs *flag.FlagSet, pos []string, withConfig, without int) error {
	if (f.config == "") != (f.export == "") {
		return usagef("%s: --config and --export go together", fs.Name())
	}
	if f.config == "" {
		return wantArgs(fs, pos, without)
	}
	var bad []string
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "format", "symlinks", "fat-type", "sector-size", "cache-size", "cache-dir":
			bad = append(bad, "--"+fl.Name)
		}
	})
	if len(bad) > 0 {
		return usagef("%s: %v cannot be used with --config: the export sets them", fs.Name(), bad)
	}
	return wantArgs(fs, pos, withConfig)
}

// exportImage is an export's image, made as serve makes it.
type exportImage struct {
	layout   *imager.Layout
	opts     imager.Options
	warnings []imager.Warning
	commit   *gitfs.Commit
	rev      string
	tree     *imager.Tree      // the tree the image shows (decrypted for a decrypting export)
	blobs    imager.BlobReader // its contents
	decrypts bool              // the tree holds decrypted files
	close    func()
}

// openExport loads the config, finds the export a client would get for
// name, and lays out its image. No access rule applies: whoever can read
// the config's identity files can read the secrets anyway.
func (f *exportFlags) openExport() (*exportImage, error) {
	cfg, err := config.Load(f.config)
	if err != nil {
		return nil, configError(err)
	}
	repos := newRepoSet(cfg.CacheSize, cfg.CacheDir)
	set, err := prepare(cfg, repos)
	if err != nil {
		repos.close()
		return nil, configError(err)
	}
	le, rev, format, err := set.lookup(f.export)
	if err != nil {
		repos.close()
		return nil, usagef("--export: %v in %s", err, f.config)
	}
	c, err := le.r.repo.Resolve(rev)
	if err != nil {
		repos.close()
		return nil, err
	}
	x := &exportImage{opts: le.x.Image.Options(format), commit: c, rev: rev, close: repos.close}
	if le.id != nil {
		budget := secrets.NewBudget(cfg.MaxSecretMemory)
		var dec *secrets.Decrypted
		if x.layout, x.warnings, dec, err = secretImage(le, c, x.opts, budget); err != nil {
			repos.close()
			return nil, fmt.Errorf("export %q: %w", f.export, err)
		}
		x.tree, x.blobs, x.decrypts = dec.Tree, dec, true
		x.close = func() { dec.Release(); repos.close() }
		return x, nil
	}
	if x.tree, err = le.r.repo.CachedTree(c, false, le.r.cacheDir); err != nil {
		repos.close()
		return nil, err
	}
	x.blobs = le.r.repo
	if x.layout, x.warnings, err = le.r.images.Image(c, x.opts); err != nil {
		repos.close()
		return nil, err
	}
	return x, nil
}
