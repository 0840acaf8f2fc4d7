package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// EnvPrefix starts every variable Load reads.
const EnvPrefix = "TOKENRELAY_"

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
// struct; "<n>" stands for a list index. The README's table is built from it.
func EnvVars() []string {
	var names []string
	var visit func(t reflect.Type, prefix string)
	visit = func(t reflect.Type, prefix string) {
		for f := range fieldsOf(t) {
			name := prefix + strings.ToUpper(yamlKey(f))
			switch {
			case isSection(f.Type):
				visit(f.Type, name+"_")
			case isSectionList(f.Type):
				visit(f.Type.Elem(), name+"_<n>_")
			default:
				names = append(names, name)
			}
		}
	}
	visit(reflect.TypeFor[Config](), EnvPrefix)
	return names
}

// isSection reports whether t is a nested struct (a YAML mapping of known
// keys) rather than a value.
func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct }

// isSectionList reports whether t is a list of sections (routes).
func isSectionList(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

// envStep is one level of a resolved variable name: a struct field, and the
// item of it when the field is a list of sections.
type envStep struct {
	field int
	index int // -1 when the field is not a list
}

// resolveEnv finds the field a variable name (without the prefix) sets in
// struct type t. It returns the steps to it and the field's YAML path.
func resolveEnv(t reflect.Type, name string) ([]envStep, string, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		key := yamlKey(f)
		if key == "" {
			continue
		}
		up := strings.ToUpper(key)
		switch {
		case isSection(f.Type):
			rest, ok := strings.CutPrefix(name, up+"_")
			if !ok {
				continue
			}
			if steps, path, ok := resolveEnv(f.Type, rest); ok {
				return append([]envStep{{i, -1}}, steps...), joinPath(key, path), true
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
				return append([]envStep{{i, index}}, steps...), fmt.Sprintf("%s[%d].%s", key, index, path), true
			}
		default:
			if name == up {
				return []envStep{{i, -1}}, key, true
			}
		}
	}
	return nil, "", false
}

// applyEnv sets every TOKENRELAY_* variable of environ on cfg. Unknown
// names are problems, so a typo does not silently leave the file's value.
func applyEnv(cfg *Config, environ []string) Problems {
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
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
	root := reflect.ValueOf(cfg).Elem()
	for _, name := range names {
		steps, _, ok := resolveEnv(root.Type(), strings.TrimPrefix(name, EnvPrefix))
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
	return problems
}

// walkSteps follows steps from v, growing lists as needed, and returns the
// settable field at the end.
func walkSteps(v reflect.Value, steps []envStep) reflect.Value {
	for _, s := range steps {
		v = v.Field(s.field)
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

var boolPtr = reflect.TypeFor[*bool]()

// setFromEnv parses a variable's value into field v.
func setFromEnv(v reflect.Value, value string) error {
	t := v.Type()
	switch {
	case t == durationType:
		d, err := parseDuration(value)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case t == boolPtr:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("%q is not true or false", value)
		}
		v.Set(reflect.ValueOf(&b))
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
	case t.Kind() == reflect.Slice:
		items := splitList(value)
		list := reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			if err := setFromEnv(list.Index(i), item); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		v.Set(list)
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
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
	default:
		// Unreachable while every field has one of the kinds above;
		// TestEnvVarsAllSettable keeps it so.
		return fmt.Errorf("cannot be set from the environment (type %s)", t)
	}
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
