package gitfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// This file decides the export-ignore attribute as gitattributes(5) and
// git archive do: patterns from the .gitattributes of every directory on
// the way to a path (deeper files take precedence) and from
// $GIT_DIR/info/attributes (highest precedence); within a file the last
// matching line wins; "[attr]" macros are honored in the top-level file
// and in info/attributes. A directory is checked as a directory (patterns
// ending in "/" match it) and, when ignored, is left out with everything
// below it. The user's global attributes file is not read.

const exportIgnoreAttr = "export-ignore"

// attrValue is what a line says about export-ignore.
type attrValue int8

const (
	attrNone        attrValue = iota // the line does not mention it
	attrSet                          // export-ignore
	attrUnset                        // -export-ignore, or a string value
	attrUnspecified                  // !export-ignore
)

// attrRule is one line: a pattern and what it says about export-ignore.
type attrRule struct {
	pattern  string // without leading "/" (when anchored) and trailing "/"
	noDir    bool   // no slash in the pattern: match the basename at any depth
	mustDir  bool   // pattern ended in "/": matches directories only
	anchored bool   // pattern had a slash: match relative to the file's directory
	value    attrValue
}

// attrFile is one attributes file and the directory it applies to.
type attrFile struct {
	base  string // directory of the file, "" for the root and for info/attributes
	rules []attrRule
}

// attrStack holds the attribute files that apply to the directory being
// walked, outermost first, and info/attributes.
type attrStack struct {
	files []*attrFile
	info  *attrFile
}

func (s *attrStack) push(f *attrFile) { s.files = append(s.files, f) }
func (s *attrStack) pop()             { s.files = s.files[:len(s.files)-1] }

// exportIgnored reports whether path (a directory when isDir) has the
// export-ignore attribute set.
func (s *attrStack) exportIgnored(path string, isDir bool) bool {
	if v := s.info.lookup(path, isDir); v != attrNone {
		return v == attrSet
	}
	// The stack holds the files of path's ancestors, the deepest last. A
	// directory's own .gitattributes does not apply to the directory
	// itself: it was pushed only when walking inside it, so it is not here.
	for i := len(s.files) - 1; i >= 0; i-- {
		if v := s.files[i].lookup(path, isDir); v != attrNone {
			return v == attrSet
		}
	}
	return false
}

// lookup returns the value of the last rule of f that matches path.
func (f *attrFile) lookup(path string, isDir bool) attrValue {
	if f == nil {
		return attrNone
	}
	for i := len(f.rules) - 1; i >= 0; i-- {
		r := &f.rules[i]
		if r.matches(f.base, path, isDir) {
			return r.value
		}
	}
	return attrNone
}

func (r *attrRule) matches(base, path string, isDir bool) bool {
	if r.mustDir && !isDir {
		return false
	}
	if r.noDir {
		name := path[strings.LastIndexByte(path, '/')+1:]
		return wildmatch(r.pattern, name, false)
	}
	rel := path
	if base != "" {
		if !strings.HasPrefix(path, base+"/") {
			return false
		}
		rel = path[len(base)+1:]
	}
	return wildmatch(r.pattern, rel, true)
}

// readInfoAttributes reads $GIT_DIR/info/attributes (of the common
// directory for linked work trees); absent is empty.
func readInfoAttributes(gitDir string) ([]byte, error) {
	p := filepath.Join(commonDir(gitDir), "info", "attributes")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gitfs: reading %s: %w", p, err)
	}
	return b, nil
}

// parseAttrFile parses an attributes file that applies to directory base.
// Macros are defined only where git allows them (toplevel).
func parseAttrFile(base string, data []byte, toplevel bool) *attrFile {
	f := &attrFile{base: base}
	macros := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		line = strings.TrimLeft(line, " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		var pat string
		if line[0] == '"' {
			p, rest, ok := unquoteC(line)
			if !ok {
				continue
			}
			pat, line = p, rest
		} else {
			i := strings.IndexAny(line, " \t")
			if i < 0 {
				i = len(line)
			}
			pat, line = line[:i], line[i:]
		}
		states := strings.Fields(line)
		if name, ok := strings.CutPrefix(pat, "[attr]"); ok {
			if toplevel && name != "" {
				macros[name] = expandStates(states, macros)
			}
			continue
		}
		if pat == "" || pat[0] == '!' { // negative patterns are not allowed in attributes
			continue
		}
		v := attrNone
		for _, st := range expandStates(states, macros) {
			switch {
			case st == exportIgnoreAttr:
				v = attrSet
			case st == "-"+exportIgnoreAttr || strings.HasPrefix(st, exportIgnoreAttr+"="):
				v = attrUnset
			case st == "!"+exportIgnoreAttr:
				v = attrUnspecified
			}
		}
		if v == attrNone {
			continue
		}
		r := attrRule{value: v}
		if strings.HasSuffix(pat, "/") && len(pat) > 1 {
			r.mustDir = true
			pat = strings.TrimSuffix(pat, "/")
		}
		if strings.IndexByte(pat, '/') < 0 {
			r.noDir = true
		} else {
			r.anchored = true
			pat = strings.TrimPrefix(pat, "/")
		}
		r.pattern = collapseDoubleStars(pat)
		f.rules = append(f.rules, r)
	}
	return f
}

// expandStates replaces set macros by their states, in place.
func expandStates(states []string, macros map[string][]string) []string {
	var out []string
	for _, st := range states {
		if m, ok := macros[st]; ok {
			out = append(out, m...)
		}
		out = append(out, st)
	}
	return out
}

// unquoteC reads a C-quoted string at the start of s and returns it and
// the rest of s.
func unquoteC(s string) (string, string, bool) {
	end := 1
	for end < len(s) {
		if s[end] == '\\' {
			end += 2
			continue
		}
		if s[end] == '"' {
			break
		}
		end++
	}
	if end >= len(s) {
		return "", "", false
	}
	u, err := strconv.Unquote(s[:end+1])
	if err != nil {
		return "", "", false
	}
	return u, s[end+1:], true
}

// wildmatch matches text against a git wildmatch pattern: "*", "?",
// "[...]" (with "!" or "^" negation, ranges, [:class:]), "\" escapes,
// and, with pathname, "**" across directories while "*", "?" and classes
// do not match "/".
func wildmatch(pat, text string, pathname bool) bool {
	return dowild(pat, text, pathname) == wmMatch
}

type wmResult int8

const (
	wmMatch wmResult = iota
	wmNoMatch
	wmAbortAll
	wmAbortToStarStar
)

func dowild(p, t string, pathname bool) wmResult {
	pi, ti := 0, 0
	for ; pi < len(p); pi++ {
		pc := p[pi]
		if ti >= len(t) && pc != '*' {
			return wmAbortAll
		}
		switch pc {
		case '\\':
			pi++
			if pi >= len(p) {
				return wmNoMatch
			}
			if t[ti] != p[pi] {
				return wmNoMatch
			}
			ti++
		case '?':
			if pathname && t[ti] == '/' {
				return wmNoMatch
			}
			ti++
		case '*':
			// Without pathname a single "*" matches "/" too.
			matchSlash := !pathname
			start := pi
			pi++
			if pi < len(p) && p[pi] == '*' {
				for pi < len(p) && p[pi] == '*' {
					pi++
				}
				if (start == 0 || p[start-1] == '/') &&
					(pi == len(p) || p[pi] == '/' || (p[pi] == '\\' && pi+1 < len(p) && p[pi+1] == '/')) {
					// "**/" also matches no directory at all.
					if pi < len(p) && p[pi] == '/' && dowild(p[pi+1:], t[ti:], pathname) == wmMatch {
						return wmMatch
					}
					matchSlash = true
				} else {
					matchSlash = false
				}
			}
			if pi == len(p) {
				if !matchSlash && strings.IndexByte(t[ti:], '/') >= 0 {
					return wmAbortToStarStar
				}
				return wmMatch
			}
			for {
				if ti >= len(t) {
					return wmAbortAll
				}
				if r := dowild(p[pi:], t[ti:], pathname); r != wmNoMatch {
					if !matchSlash || r != wmAbortToStarStar {
						return r
					}
				} else if !matchSlash && t[ti] == '/' {
					return wmAbortToStarStar
				}
				ti++
			}
		case '[':
			end, ok := matchClass(p, pi, t[ti], pathname)
			if end < 0 {
				// An unterminated class matches nothing, as in git.
				return wmAbortAll
			}
			if !ok {
				return wmNoMatch
			}
			pi = end
			ti++
		default:
			if t[ti] != pc {
				return wmNoMatch
			}
			ti++
		}
	}
	if ti < len(t) {
		return wmNoMatch
	}
	return wmMatch
}

// matchClass matches c against the class starting at p[pi] == '['. It
// returns the index of the closing ']' (or -1 when there is none) and
// whether c matches.
func matchClass(p string, pi int, c byte, pathname bool) (int, bool) {
	i := pi + 1
	negated := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		negated = true
		i++
	}
	matched := false
	first := true
	var prev byte
	havePrev := false
	for ; i < len(p); i++ {
		pc := p[i]
		if pc == ']' && !first {
			if matched == negated || (pathname && c == '/') {
				return i, false
			}
			return i, true
		}
		first = false
		switch {
		case pc == '\\':
			i++
			if i >= len(p) {
				return -1, false
			}
			pc = p[i]
			if c == pc {
				matched = true
			}
			prev, havePrev = pc, true
		case pc == '-' && havePrev && i+1 < len(p) && p[i+1] != ']':
			i++
			hi := p[i]
			if hi == '\\' {
				i++
				if i >= len(p) {
					return -1, false
				}
				hi = p[i]
			}
			if c <= hi && c >= prev {
				matched = true
			}
			havePrev = false
		case pc == '[' && i+1 < len(p) && p[i+1] == ':':
			s := i + 2
			k := strings.IndexByte(p[s:], ']')
			if k < 0 {
				return -1, false
			}
			if k < 1 || p[s+k-1] != ':' {
				// Not a class name: a literal '['.
				if c == pc {
					matched = true
				}
				prev, havePrev = pc, true
				continue
			}
			known, in := charClass(p[s:s+k-1], c)
			if !known {
				return -1, false // git: a malformed [:class:] matches nothing
			}
			if in {
				matched = true
			}
			i = s + k
			havePrev = false
		default:
			if c == pc {
				matched = true
			}
			prev, havePrev = pc, true
		}
	}
	return -1, false
}

// charClass reports whether name is a known class and whether c is in it.
func charClass(name string, c byte) (known, in bool) {
	switch name {
	case "alnum":
		return true, isAlpha(c) || isDigit(c)
	case "alpha":
		return true, isAlpha(c)
	case "blank":
		return true, c == ' ' || c == '\t'
	case "cntrl":
		return true, c < 0x20 || c == 0x7f
	case "digit":
		return true, isDigit(c)
	case "graph":
		return true, c > 0x20 && c < 0x7f
	case "lower":
		return true, c >= 'a' && c <= 'z'
	case "print":
		return true, c >= 0x20 && c < 0x7f
	case "punct":
		return true, c > 0x20 && c < 0x7f && !isAlpha(c) && !isDigit(c)
	case "space":
		return true, c == ' ' || (c >= '\t' && c <= '\r')
	case "upper":
		return true, c >= 'A' && c <= 'Z'
	case "xdigit":
		return true, isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
	}
	return false, false
}

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// collapseDoubleStars turns runs of "**/" into one: the meaning is the
// same, and matching time would otherwise double with every repeat (a
// crafted .gitattributes line could stall a tree listing for days).
func collapseDoubleStars(pat string) string {
	for strings.Contains(pat, "**/**/") {
		pat = strings.ReplaceAll(pat, "**/**/", "**/")
	}
	return pat
}
