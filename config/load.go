package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxFileBytes caps the configuration file; a real one is a few KiB.
const maxFileBytes = 1 << 20

// Load reads the YAML file at path, applies TOKENRELAY_* variables from
// environ (in os.Environ form, "NAME=value"), reads the *_file secrets, fills
// defaults and validates the result. path "" means no file: the whole
// configuration comes from the environment.
//
// When anything is wrong, the error is a Problems listing every problem with
// its key path; I/O errors on the file itself are wrapped plainly. Warnings
// are returned with a valid configuration.
func Load(path string, environ []string) (*Config, Warnings, error) {
	var data []byte
	if path != "" {
		var err error
		data, err = readLimited(path, maxFileBytes)
		if err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
	}
	return Parse(data, environ)
}

// Parse is Load for file contents already in memory.
func Parse(data []byte, environ []string) (*Config, Warnings, error) {
	return loader{readFile: func(name string) ([]byte, error) {
		return readLimited(name, maxSecretFileBytes)
	}}.load(data, environ)
}

// loader carries Load's only dependency, so tests and the fuzzer can read
// secret files from memory.
type loader struct {
	readFile func(name string) ([]byte, error)
}

func (l loader) load(data []byte, environ []string) (*Config, Warnings, error) {
	cfg, problems := decodeYAML(data)
	if cfg == nil {
		// Still check the environment, so one run reports its problems
		// along with the file's.
		envProblems, _ := applyEnv(new(Config), environ)
		return nil, nil, append(problems, envProblems...)
	}
	// The file's problems do not stop the checks that follow: the keys
	// that were fine are loaded, so one run reports every problem.
	envProblems, notes := applyEnv(cfg, environ)
	problems = append(problems, envProblems...)
	problems = append(problems, readSecretFiles(cfg, l.readFile)...)
	cfg.SetDefaults()
	warnings, err := cfg.Validate()
	var invalid Problems
	if err != nil && !errors.As(err, &invalid) {
		return nil, nil, err
	}
	for _, p := range invalid {
		// A key whose value was refused as input is absent for
		// Validate; do not report it twice.
		if !coveredBy(problems, p.Path) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return nil, nil, problems
	}
	return cfg, append(warnings, notes...), nil
}

// coveredBy reports whether a problem of ps is about path or a key above
// it.
func coveredBy(ps Problems, path string) bool {
	for _, p := range ps {
		if p.Path == "" {
			continue
		}
		if path == p.Path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[") {
			return true
		}
	}
	return false
}

// readLimited reads a file, refusing one larger than limit bytes.
func readLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, limit)
	}
	return data, nil
}

// decodeYAML turns the file into a Config. yaml.v3's own errors name a line
// but not the key path, so a walk over the node tree first finds every
// unknown key, bare-number duration and type mismatch with its path. A tree
// that passes is decoded with KnownFields(true) as a backstop; otherwise the
// refused nodes are pruned and the rest decoded, and the Config comes back
// with the problems, so validation can report on the keys that were fine.
// A nil Config means the file is unusable and problems says why.
func decodeYAML(data []byte) (*Config, Problems) {
	cfg := new(Config)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, nil // empty file, or only comments
		}
		return nil, Problems{{Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, Problems{{Message: fmt.Sprintf("only one YAML document is allowed (another starts at line %d)", next.Line)}}
	case !errors.Is(err, io.EOF):
		return nil, Problems{{Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}

	w := walker{budget: maxWalkNodes, bad: map[*yaml.Node]bool{}}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return cfg, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, Problems{{Message: fmt.Sprintf("the file must be a YAML mapping of keys (line %d)", root.Line)}}
	}
	w.walk(root, reflect.TypeFor[Config](), "")
	if w.exhausted {
		return nil, w.problems
	}
	if len(w.problems) > 0 {
		// Drop what the walk refused and load the rest, so validation
		// can still report the problems of the keys that were fine.
		prune(root, w.bad, map[*yaml.Node]bool{})
		if err := root.Decode(cfg); err != nil {
			return nil, w.problems
		}
		return cfg, w.problems
	}

	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(cfg); err != nil {
		return nil, Problems{{Message: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	return cfg, nil
}

// prune removes from the tree under n every node the walk refused (and the
// key or value paired with it). seen guards against alias cycles.
func prune(n *yaml.Node, bad, seen map[*yaml.Node]bool) {
	if n == nil || seen[n] {
		return
	}
	seen[n] = true
	switch n.Kind {
	case yaml.AliasNode:
		prune(n.Alias, bad, seen)
	case yaml.MappingNode:
		kept := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if bad[k] || bad[v] {
				continue
			}
			prune(v, bad, seen)
			kept = append(kept, k, v)
		}
		n.Content = kept
	case yaml.SequenceNode:
		kept := n.Content[:0:0]
		for _, item := range n.Content {
			if bad[item] {
				continue
			}
			prune(item, bad, seen)
			kept = append(kept, item)
		}
		n.Content = kept
	}
}

// maxWalkNodes bounds the walk, so a file that expands aliases
// exponentially ("billion laughs") costs little.
const maxWalkNodes = 100_000

// maxAliasDepth bounds alias chains, and so alias cycles.
const maxAliasDepth = 16

var durationType = reflect.TypeFor[time.Duration]()

// walker checks a YAML node tree against the Config struct type.
type walker struct {
	problems Problems
	// bad holds the nodes refused, for prune.
	bad        map[*yaml.Node]bool
	budget     int
	aliasDepth int
	exhausted  bool
}

func (w *walker) spend() bool {
	if w.budget <= 0 {
		if !w.exhausted {
			w.exhausted = true
			w.problems.add("", "the YAML document is too large or expands too many aliases")
		}
		return false
	}
	w.budget--
	return true
}

// refuse records a problem at path and marks n to be pruned.
func (w *walker) refuse(n *yaml.Node, path, format string, args ...any) {
	w.problems.add(path, format, args...)
	w.bad[n] = true
}

// walk checks node n against type t at key path path.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if !w.spend() {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || w.aliasDepth >= maxAliasDepth {
			w.refuse(n, path, "alias nests too deeply (line %d)", n.Line)
			return
		}
		w.aliasDepth++
		w.walk(n.Alias, t, path)
		w.aliasDepth--
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value leaves the default
	}
	if isOptionalSection(t) {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.refuse(n, path, "must be a mapping of keys (line %d)", n.Line)
			return
		}
		w.mapping(n, t, path, map[string]int{})
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		if n.Kind != yaml.SequenceNode {
			w.refuse(n, path, "must be a list (line %d)", n.Line)
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		w.leaf(n, t, path)
	}
}

// mapping checks the keys of a mapping node against struct type t. seen
// holds the keys already met (with their lines), across merge keys.
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string, seen map[string]int) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			w.merge(v, t, path, seen)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.refuse(k, path, "keys must be plain strings (line %d)", k.Line)
			continue
		}
		keyPath := joinPath(path, k.Value)
		if line, dup := seen[k.Value]; dup {
			w.refuse(k, keyPath, "duplicate key (lines %d and %d)", line, k.Line)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fieldByKey(t, k.Value)
		if !ok {
			msg := fmt.Sprintf("unknown key (line %d)", k.Line)
			if s := suggest(k.Value, keysOf(t)); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			w.refuse(k, keyPath, "%s", msg)
			continue
		}
		w.walk(v, f.Type, keyPath)
	}
}

// merge checks the value of a "<<" merge key: a mapping or a list of them.
func (w *walker) merge(v *yaml.Node, t reflect.Type, path string, seen map[string]int) {
	if !w.spend() {
		return
	}
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	switch v.Kind {
	case yaml.MappingNode:
		// Keys of a merged mapping may repeat keys of the mapping that
		// merges it (the outer one wins), so they get their own seen set.
		w.mapping(v, t, path, map[string]int{})
	case yaml.SequenceNode:
		for _, item := range v.Content {
			w.merge(item, t, path, seen)
		}
	default:
		w.refuse(v, path, "a merge key (<<) must refer to a mapping (line %d)", v.Line)
	}
}

// leaf checks a scalar, list or map value by decoding it alone into a
// value of its field's type.
func (w *walker) leaf(n *yaml.Node, t reflect.Type, path string) {
	if t == durationType || (t.Kind() == reflect.Pointer && t.Elem() == durationType) {
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && !isNumber(n.Value)) {
			w.refuse(n, path, "must be a duration such as \"60s\" (line %d)", n.Line)
			return
		}
		// yaml.v3 reads only strings into a time.Duration: a bare number,
		// even 0, is refused with a message that names no unit.
		if n.ShortTag() != "!!str" {
			w.refuse(n, path, "%v (line %d)", errNoUnit(n.Value), n.Line)
			return
		}
		if _, err := parseDuration(n.Value); err != nil {
			w.refuse(n, path, "%v (line %d)", err, n.Line)
		}
		return
	}
	if n.Kind == yaml.MappingNode {
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if line, dup := seen[k.Value]; dup {
				w.refuse(n, joinPath(path, k.Value), "duplicate key (lines %d and %d)", line, k.Line)
				return
			}
			seen[k.Value] = k.Line
		}
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		w.refuse(n, path, "must be %s (line %d)", describe(t), n.Line)
	}
}

// parseDuration parses a Go duration string and explains the usual
// mistake, a bare number, in words.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err == nil {
		return d, nil
	}
	if isNumber(s) {
		return 0, errNoUnit(s)
	}
	return 0, fmt.Errorf("%q is not a duration; write one such as \"60s\", \"5m\" or \"24h\"", s)
}

func errNoUnit(s string) error {
	return fmt.Errorf("%s is a bare number; write a duration with a unit, such as \"%ss\"", s, s)
}

func isNumber(s string) bool {
	s = strings.TrimLeft(s, "+-")
	if s == "" {
		return false
	}
	dot := false
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
		case r == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return s != "."
}

// describe says in words what a value of type t looks like in YAML.
func describe(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Pointer:
		return describe(t.Elem())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list of " + plural(t.Elem())
	case reflect.Map:
		return "a mapping of " + plural(t.Elem())
	}
	return "a " + t.String()
}

func plural(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "strings"
	case reflect.Int, reflect.Int64:
		return "integers"
	}
	return t.String() + " values"
}

// yamlKey returns the YAML key of a struct field, "" when it has none.
func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for f := range fieldsOf(t) {
		if yamlKey(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// fieldsOf yields the fields of struct type t that have a YAML key, those
// of the structs it inlines (yaml ",inline": a package's options that share
// a section with others) included. Each field's Index leads to it from t.
func fieldsOf(t reflect.Type) func(yield func(reflect.StructField) bool) {
	return func(yield func(reflect.StructField) bool) {
		for i := range t.NumField() {
			f := t.Field(i)
			if inlined(f) {
				for inner := range fieldsOf(f.Type) {
					inner.Index = append([]int{i}, inner.Index...)
					if !yield(inner) {
						return
					}
				}
				continue
			}
			if yamlKey(f) == "" {
				continue
			}
			if !yield(f) {
				return
			}
		}
	}
}

// inlined reports whether f is a struct whose keys sit in the mapping of
// the struct that holds it.
func inlined(f reflect.StructField) bool {
	_, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return f.Type.Kind() == reflect.Struct && slices.Contains(strings.Split(opts, ","), "inline")
}

func keysOf(t reflect.Type) []string {
	var keys []string
	for f := range fieldsOf(t) {
		keys = append(keys, yamlKey(f))
	}
	return keys
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns the candidate closest to s when it is a likely typo
// (edit distance at most 2), else "".
func suggest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist >= len(s) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // not a typo of a key; keeps the cost bounded
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
