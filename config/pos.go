package config

import (
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// positions maps dotted key paths ("export.keys.decrypt",
// "export.keys.allow[1].uid", "listen[0].address") to the 1-based line
// where the key is written, so errors found after decoding can name it.
type positions map[string]int

// keyPath joins key parts as TOML writes them: bare parts as they are,
// others quoted.
func keyPath(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(quoteKey(p))
	}
	return b.String()
}

// quoteKey returns k bare when TOML allows it, else as a quoted string.
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return strconv.Quote(k)
		}
	}
	return k
}

// indexed appends an array index to the last part of a path.
func indexed(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// scanPositions records where each key of doc is. It never fails: a
// document that does not parse is reported by the decoder, with its line.
func scanPositions(doc []byte) positions {
	pos := positions{}
	var p unstable.Parser
	p.Reset(doc)
	var table string           // path of the current [table] or [[array table]] element
	arrays := map[string]int{} // array tables seen, with their element count
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts := keyParts(e.Key())
			name := keyPath(parts)
			line := keyLine(&p, e.Key())
			if e.Kind == unstable.ArrayTable {
				n := arrays[name]
				arrays[name] = n + 1
				pos.set(name, line)
				name = indexed(name, n)
			}
			table = name
			pos.set(table, line)
		case unstable.KeyValue:
			parts := keyParts(e.Key())
			name := keyPath(parts)
			if table != "" {
				name = table + "." + name
			}
			pos.set(name, keyLine(&p, e.Key()))
			pos.value(&p, name, e.Value())
		}
	}
	return pos
}

// value records the keys inside an inline table or an array of them.
func (pos positions) value(p *unstable.Parser, name string, v *unstable.Node) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			kv := it.Node()
			if kv.Kind != unstable.KeyValue {
				continue
			}
			sub := name + "." + keyPath(keyParts(kv.Key()))
			pos.set(sub, keyLine(p, kv.Key()))
			pos.value(p, sub, kv.Value())
		}
	case unstable.Array:
		it := v.Children()
		for i := 0; it.Next(); i++ {
			el := it.Node()
			if el.Kind == unstable.InlineTable {
				pos.set(indexed(name, i), lineOf(p, el))
			}
			pos.value(p, indexed(name, i), el)
		}
	}
}

func (pos positions) set(name string, line int) {
	if _, ok := pos[name]; !ok && line > 0 {
		pos[name] = line
	}
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

func keyLine(p *unstable.Parser, it unstable.Iterator) int {
	if it.Next() {
		return lineOf(p, it.Node())
	}
	return 0
}

func lineOf(p *unstable.Parser, n *unstable.Node) int {
	if n.Raw.Length == 0 && n.Raw.Offset == 0 {
		return 0
	}
	return p.Shape(n.Raw).Start.Line
}

// line returns where key (or the nearest enclosing key written) is.
func (pos positions) line(key string) int {
	for key != "" {
		if l, ok := pos[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// fullKey finds the full path of a key the decoder names only partly
// (inside an array of inline tables it drops the array): the recorded key
// on that line with the same last part.
func (pos positions) fullKey(key string, line int) string {
	last := key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		last = key[i+1:]
	}
	best := ""
	for k, l := range pos {
		if l == line && (k == key || strings.HasSuffix(k, "."+last)) && len(k) > len(best) {
			best = k
		}
	}
	if best == "" {
		return key
	}
	return best
}
