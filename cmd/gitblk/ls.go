package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
)

const lsExamples = `  gitblk ls . HEAD
  gitblk ls --format fat --json /srv/site.git main | jq '.warnings'
`

// lsOutput is the --json form of `gitblk ls`.
type lsOutput struct {
	Commit   string      `json:"commit"`
	Tree     string      `json:"tree"`
	Format   string      `json:"format"`
	Size     int64       `json:"size"`
	Extents  []lsExtent  `json:"extents"`
	Warnings []lsWarning `json:"warnings"`
}

type lsExtent struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	Kind   string `json:"kind"`
	Blob   string `json:"blob,omitempty"`
	What   string `json:"what"`
}

type lsWarning struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ls", "ls [flags] REPO REF", lsExamples, stderr)
	var cf commonFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args, 2)
	if err != nil {
		return err
	}
	cf.setup(slog.New(slog.NewTextHandler(stderr, nil)))
	o, err := cf.openImage(pos[0], pos[1])
	if err != nil {
		return err
	}
	defer o.repo.Close()
	c, layout, opts, warnings := o.commit, o.layout, o.opts, o.warnings

	out := lsOutput{Commit: c.ID, Tree: c.Tree, Format: string(opts.Format), Size: layout.Size(),
		Extents: []lsExtent{}, Warnings: []lsWarning{}}
	// The extent table is generated as it is listed: the text form
	// prints each extent as it comes, without holding the table.
	extents := func(yield func(lsExtent) bool) {
		for e := range layout.Extents() {
			x := lsExtent{Offset: e.Off, Length: e.Len, Kind: e.Kind.String(), What: e.Desc}
			if e.Kind.String() == "blob" {
				x.Blob = e.Blob.String()
			}
			if !yield(x) {
				return
			}
		}
	}

	bw := bufio.NewWriter(stdout)
	if *asJSON {
		for x := range extents {
			out.Extents = append(out.Extents, x)
		}
		for _, w := range warnings {
			out.Warnings = append(out.Warnings, lsWarning{Path: w.Path, Message: w.Msg})
		}
		enc := json.NewEncoder(bw)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		return bw.Flush()
	}
	fmt.Fprintf(bw, "# commit %s tree %s format %s size %d\n", out.Commit, out.Tree, out.Format, out.Size)
	fmt.Fprintf(bw, "%12s %12s %-4s  %s\n", "OFFSET", "LENGTH", "KIND", "WHAT")
	for x := range extents {
		what := x.What
		if x.Blob != "" {
			what += " (blob " + x.Blob + ")"
		}
		fmt.Fprintf(bw, "%12d %12d %-4s  %s\n", x.Offset, x.Length, x.Kind, what)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	printWarnings(stderr, opts.Format, warnings)
	return nil
}
