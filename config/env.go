package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// envPrefix starts every variable Load reads.
const envPrefix = "TOKENRELAY_"

// maxEnvIndex bounds list indexes in variable names (TOKENRELAY_ROUTES_7_PATH),
// so a typo cannot allocate a huge list.
const maxEnvIndex = 99

// The variable names are derived from the YAML keys by reflection, so they
// cannot drift from the struct: the key path upper-cased with "_" between
// levels (TOKENRELAY_PROVIDER_CLIENT_ID), list items by index
// (TOKENRELAY_ROUTES_0_UPSTREAM). Lists of strings are comma-separated,
// mappings are "k=v,k2=v2", durations Go duration strings, booleans
// strconv.ParseBool forms. A variable replaces the file's value whole (a list
// or a mapping is not merged).

// EnvVars lists every variable Load understands, in the order of the
// struct; "<n>" stands for a list index.
func EnvVars() []string {
	keys := Keys()
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Env
	}
	return names
}

// Key is one key of the configuration file, as the configuration reference
// (docs/configuration.md, written by internal/configref) lists it.
type Key struct {
	// Path is the key path, "session.redis.url"; "[n]" stands for a list
	// index ("routes[n].path").
	Path string
	// Env is the environment variable that sets the key; "<n>" stands for
	// a list index.
	Env string
	// Owner is the struct type that declares the key's field (the
	// package's options type), and Field the field's name in it.
	Owner reflect.Type
	Field string
	// index leads from Config to the field; nil inside a list.
	index []int
}

// Value returns the key's value in c, or false for a key inside a list
// (routes[n], provider.custom.capture[n]), whose values are per item.
func (k Key) Value(c *Config) (reflect.Value, bool) {
	if k.index == nil {
		return reflect.Value{}, false
	}
	return reflect.ValueOf(c).Elem().FieldByIndex(k.index), true
}

// Keys lists every key of the file that holds a value (not a section), in
// the order of the struct.
func Keys() []Key {
	var keys []Key
	var visit func(t reflect.Type, path, env string, index []int, inList bool)
	visit = func(t reflect.Type, path, env string, index []int, inList bool) {
		for i := range t.NumField() {
			f := t.Field(i)
			fieldIndex := append(slices.Clone(index), i)
			if inlined(f) {
				visit(f.Type, path, env, fieldIndex, inList)
				continue
			}
			key := yamlKey(f)
			if key == "" {
				continue
			}
			p, e := joinPath(path, key), env+strings.ToUpper(key)
			switch {
			case isOptionalSection(f.Type):
				// A field through a nil pointer has no value to read.
				visit(f.Type.Elem(), p, e+"_", nil, true)
			case isSection(f.Type):
				visit(f.Type, p, e+"_", fieldIndex, inList)
			case isSectionList(f.Type):
				visit(f.Type.Elem(), p+"[n]", e+"_<n>_", nil, true)
			default:
				k := Key{Path: p, Env: e, Owner: t, Field: f.Name}
				if !inList {
					k.index = fieldIndex
				}
				keys = append(keys, k)
			}
		}
	}
	visit(reflect.TypeFor[Config](), "", envPrefix, nil, false)
	return keys
}

// isSection reports whether t is a nested struct (a YAML mapping of known
// keys) rather than a value.
func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct }

// isOptionalSection reports whether t points to a section: one whose
// presence means something even when empty (`identity: {}`).
func isOptionalSection(t reflect.Type) bool {
	return t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct
}

// isSectionList reports whether t is a list of sections (routes).
func isSectionList(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

// envStep is one level of a resolved variable name: a struct field (its
// index path, through inlined structs), and the item of it when the field
// is a list of sections.
type envStep struct {
	field []int
	index int // -1 when the field is not a list
}

// resolveEnv finds the field a variable name (without the prefix) sets in
// struct type t. It returns the steps to it and the field's YAML path.
func resolveEnv(t reflect.Type, name string) ([]envStep, string, bool) {
	for f := range fieldsOf(t) {
		key := yamlKey(f)
		up := strings.ToUpper(key)
		switch {
		case isSection(f.Type), isOptionalSection(f.Type):
			rest, ok := strings.CutPrefix(name, up+"_")
			if !ok {
				continue
			}
			t := f.Type
			if isOptionalSection(t) {
				t = t.Elem()
			}
			if steps, path, ok := resolveEnv(t, rest); ok {
				return append([]envStep{{f.Index, -1}}, steps...), joinPath(key, path), true
			}
		case isSectionList(f.Type):
			rest, ok := strings.CutPrefix(name, up+"_")
			if !ok {
				continue
			}
			num, rest, ok := strings.Cut(rest, "_")
			index, err := strconv.Atoi(num)
			if !ok || err != nil || index < 0 || index > maxEnvIndex || strconv.Itoa(index) != num {
				continue
			}
			if steps, path, ok := resolveEnv(f.Type.Elem(), rest); ok {
				return append([]envStep{{f.Index, index}}, steps...), fmt.Sprintf("%s[%d].%s", key, index, path), true
			}
		default:
			if name == up {
				return []envStep{{f.Index, -1}}, key, true
			}
		}
	}
	return nil, "", false
}

// applyEnv sets every TOKENRELAY_* variable of environ on cfg. Unknown
// names are problems, so a typo does not silently leave the file's value,
// except Kubernetes service links (servicelinks.go), which are ignored with
// a debug-level note each.
func applyEnv(cfg *Config, environ []string) (Problems, Warnings) {
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) {
			continue
		}
		vars[name] = value // the last of duplicates wins, as with getenv
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	slices.Sort(names)

	var problems Problems
	var notes Warnings
	root := reflect.ValueOf(cfg).Elem()
	for _, name := range names {
		steps, _, ok := resolveEnv(root.Type(), strings.TrimPrefix(name, envPrefix))
		if !ok && isServiceLink(strings.TrimPrefix(name, envPrefix), vars[name]) {
			notes = append(notes, Problem{Path: name, Message: "ignored: a Kubernetes service-link variable (set enableServiceLinks: false in the pod spec)", Severity: problem.Debug})
			continue
		}
		if !ok {
			msg := "unknown variable"
			if s := suggest(name, EnvVars()); s != "" {
				msg += fmt.Sprintf("; did you mean %s?", s)
			}
			problems.add(name, "%s", msg)
			continue
		}
		if err := setFromEnv(walkSteps(root, steps), vars[name]); err != nil {
			problems.add(name, "%v", err)
		}
	}
	return problems, notes
}

// walkSteps follows steps from v, growing lists as needed, and returns the
// settable field at the end.
func walkSteps(v reflect.Value, steps []envStep) reflect.Value {
	for i, s := range steps {
		v = v.FieldByIndex(s.field)
		if isOptionalSection(v.Type()) && i < len(steps)-1 {
			// A variable inside an optional section makes it present.
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		if s.index < 0 {
			continue
		}
		if v.Len() <= s.index {
			grown := reflect.MakeSlice(v.Type(), s.index+1, s.index+1)
			reflect.Copy(grown, v)
			v.Set(grown)
		}
		v = v.Index(s.index)
	}
	return v
}

// setFromEnv parses a variable's value into field v.
func setFromEnv(v reflect.Value, value string) error {
	t := v.Type()
	switch {
	case t.Kind() == reflect.Pointer:
		// An optional value (*bool, *time.Duration): set, it is no
		// longer "left out".
		p := reflect.New(t.Elem())
		if err := setFromEnv(p.Elem(), value); err != nil {
			return err
		}
		v.Set(p)
	case t.Kind() == reflect.Slice:
		return setList(v, value)
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		return setMap(v, value)
	default:
		return setScalar(v, value)
	}
	return nil
}

// setScalar parses a duration, boolean, string or integer into v.
func setScalar(v reflect.Value, value string) error {
	t := v.Type()
	switch {
	case t == durationType:
		d, err := parseDuration(value)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("%q is not true or false", value)
		}
		v.SetBool(b)
	case t.Kind() == reflect.String:
		v.SetString(value)
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(value, 10, t.Bits())
		if err != nil {
			return fmt.Errorf("%q is not an integer", value)
		}
		v.SetInt(n)
	default:
		// Unreachable while every field has one of the kinds above;
		// TestEnvVarsAllSettable keeps it so.
		return fmt.Errorf("cannot be set from the environment (type %s)", t)
	}
	return nil
}

// setList parses a comma-separated list into v.
func setList(v reflect.Value, value string) error {
	items := splitList(value)
	list := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		if err := setFromEnv(list.Index(i), item); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	v.Set(list)
	return nil
}

// setMap parses "k=v,k2=v2" into v.
func setMap(v reflect.Value, value string) error {
	t := v.Type()
	m := reflect.MakeMap(t)
	for _, item := range splitList(value) {
		k, val, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return fmt.Errorf("item %q is not key=value (write k=v,k2=v2)", item)
		}
		elem := reflect.New(t.Elem()).Elem()
		if err := setFromEnv(elem, strings.TrimSpace(val)); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), elem)
	}
	v.Set(m)
	return nil
}

// splitList splits a comma-separated value, trimming spaces and dropping
// empty items, so "" is the empty list.
func splitList(value string) []string {
	var items []string
	for item := range strings.SplitSeq(value, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}
