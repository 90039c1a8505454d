package bspsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/wabridge/wabridge/bsp"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"
)

// shape is a request body contract: the golden file's keys are the only keys allowed, each with
// the golden value's JSON type; required lists dotted paths that must be present ("a.b",
// "a.list[].c" for every element); freeform lists objects whose keys are the caller's to choose
// (string values only), like request_uri_user_params.
type shape struct {
	file     string
	root     string // dotted path inside the golden file to use as the body's shape ("" = whole file)
	required []string
	freeform []string
}

// goldenSet loads and caches golden files.
type goldenSet struct {
	fsys fs.FS
	mu   sync.Mutex
	raw  map[string][]byte
}

func (g *goldenSet) bytes(name string) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.raw[name]; ok {
		return b, nil
	}
	b, err := fs.ReadFile(g.fsys, name)
	if err != nil {
		return nil, fmt.Errorf("bspsim: golden file: %w", err)
	}
	if g.raw == nil {
		g.raw = map[string][]byte{}
	}
	g.raw[name] = b
	return b, nil
}

// value decodes a golden file (a fresh copy each time, so callers may modify it). // comments
// are allowed (Positus' published samples have them).
func (g *goldenSet) value(name string) (any, error) {
	b, err := g.bytes(name)
	if err != nil {
		return nil, err
	}
	return decodeStrict(bsp.StripJSONComments(b))
}

// decodeStrict decodes one JSON value, keeping numbers as json.Number and refusing trailing
// data.
func decodeStrict(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// check validates body against s.
func (s shape) check(g *goldenSet, body []byte) (any, error) {
	golden, err := g.value(s.file)
	if err != nil {
		return nil, err
	}
	if s.root != "" {
		golden = lookup(golden, s.root)
	}
	got, err := decodeStrict(body)
	if err != nil {
		return nil, fmt.Errorf("body is not valid JSON: %w", err)
	}
	free := map[string]bool{}
	for _, p := range s.freeform {
		free[p] = true
	}
	if err := compare(golden, got, "", free); err != nil {
		return nil, err
	}
	for _, p := range s.required {
		if !present(got, strings.Split(p, ".")) {
			return nil, fmt.Errorf("required parameter %s is missing", p)
		}
	}
	return got, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// compare checks got against the golden value: same JSON types, no key the golden lacks.
func compare(golden, got any, path string, free map[string]bool) error {
	name := path
	if name == "" {
		name = "the body"
	}
	if gt, tt := jsonType(golden), jsonType(got); gt != tt {
		return fmt.Errorf("%s must be a %s, not a %s", name, gt, tt)
	}
	switch g := golden.(type) {
	case map[string]any:
		m := got.(map[string]any)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := join(path, k)
			if free[path] {
				if _, ok := m[k].(string); !ok {
					return fmt.Errorf("%s must be a string", p)
				}
				continue
			}
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("unknown parameter %s", p)
			}
			if err := compare(gv, m[k], p, free); err != nil {
				return err
			}
		}
	case []any:
		if len(g) == 0 {
			return nil
		}
		for _, e := range got.([]any) {
			if err := compare(g[0], e, path+"[]", free); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// present reports whether a dotted path exists; "x[]" descends into every element of array x.
func present(v any, parts []string) bool {
	if len(parts) == 0 {
		return true
	}
	key, each := strings.CutSuffix(parts[0], "[]")
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	child, ok := m[key]
	if !ok || child == nil {
		return false
	}
	if !each {
		return present(child, parts[1:])
	}
	arr, ok := child.([]any)
	if !ok {
		return false
	}
	for _, e := range arr {
		if !present(e, parts[1:]) {
			return false
		}
	}
	return true
}

// lookup follows a dotted path of object keys and array indexes ("entry.0.changes").
func lookup(v any, path string) any {
	if path == "" {
		return v
	}
	for _, p := range strings.Split(path, ".") {
		switch t := v.(type) {
		case map[string]any:
			v = t[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i < 0 || i >= len(t) {
				return nil
			}
			v = t[i]
		default:
			return nil
		}
	}
	return v
}

// str reads a string at a dotted path; "" when absent or not a string.
func str(v any, path string) string {
	s, _ := lookup(v, path).(string)
	return s
}
