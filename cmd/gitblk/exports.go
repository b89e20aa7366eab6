package main

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/gitblk/gitblk/imager"
)

// Export names (documented in README "Export names"):
//
//	name   = "" | format | ref | ref ":" format
//	format = "tar" | "fat"
//	ref    = a full ref name ("refs/...") that a --refs pattern matches
//
// "" serves REF in the default format; "tar" and "fat" serve REF in that
// format. Git forbids ':' in ref names and every ref starts with "refs/", so
// no name can mean two things.

// exportName is a parsed export name.
type exportName struct {
	rev    string // the revision to resolve
	format string // "" for the server's default format
}

var errUnknownName = errors.New("unknown export name")

// exportNamer parses and lists export names for one server.
type exportNamer struct {
	defaultRev string
	patterns   []string // --refs patterns, path.Match syntax on full ref names
}

// parse maps an export name to a revision and format.
func (x *exportNamer) parse(name string) (exportName, error) {
	switch name {
	case "":
		return exportName{rev: x.defaultRev}, nil
	case string(imager.FormatTar), string(imager.FormatFAT):
		return exportName{rev: x.defaultRev, format: name}, nil
	}
	ref, format := name, ""
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		ref, format = name[:i], name[i+1:]
		if _, err := imager.ParseFormat(format); err != nil {
			return exportName{}, fmt.Errorf("%w %q: %v", errUnknownName, name, err)
		}
	}
	if !x.allowed(ref) {
		return exportName{}, fmt.Errorf("%w %q: not a served ref (serve more with --refs)", errUnknownName, name)
	}
	return exportName{rev: ref, format: format}, nil
}

// allowed reports whether ref is a well-formed full ref name that a --refs
// pattern matches. Revision syntax (v1~1, v1^2, v1@{1}, ...) is refused:
// it would reach commits no served ref names.
func (x *exportNamer) allowed(ref string) bool {
	if !strings.HasPrefix(ref, "refs/") || !validRefName(ref) {
		return false
	}
	for _, p := range x.patterns {
		if ok, err := path.Match(p, ref); err == nil && ok {
			return true
		}
	}
	return false
}

// checkPatterns rejects malformed --refs patterns up front.
func checkPatterns(patterns []string) error {
	for _, p := range patterns {
		if !strings.HasPrefix(p, "refs/") {
			return usagef("--refs %q: want a full ref pattern such as 'refs/tags/*'", p)
		}
		if _, err := path.Match(p, "refs/"); err != nil {
			return usagef("--refs %q: %v", p, err)
		}
	}
	return nil
}

// list returns the export names: "", the formats, then every served ref.
func (x *exportNamer) list(refs []string) []string {
	names := []string{"", string(imager.FormatTar), string(imager.FormatFAT)}
	for _, r := range refs {
		if x.allowed(r) {
			names = append(names, r)
		}
	}
	return names
}

// validRefName applies git's check-ref-format rules: no "..", no control
// characters, space, ~ ^ : ? * [ \, no "@{", no component that starts
// with "." or ends with ".lock", no empty component, no trailing "." or "/".
func validRefName(ref string) bool {
	if ref == "" || strings.Contains(ref, "..") || strings.Contains(ref, "@{") ||
		strings.HasSuffix(ref, ".") || strings.HasSuffix(ref, "/") {
		return false
	}
	for _, c := range ref {
		if c < 0x20 || c == 0x7f || strings.ContainsRune(" ~^:?*[\\", c) {
			return false
		}
	}
	for _, part := range strings.Split(ref, "/") {
		if part == "" || strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return false
		}
	}
	return true
}
