package charttest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestSchemaMirrorsConfig keeps values.schema.json's `config` in step with
// config/config.go: every YAML key of the Go structs has a schema property at
// the same path and the schema has no key the binary would reject. Keys the
// chart sets itself, or keeps out of the ConfigMap (inline secrets), are in
// the schema as forbidden ("not": {}), which still counts as mirrored.
func TestSchemaMirrorsConfig(t *testing.T) {
	structs := parseStructs(t, "../../config/config.go")
	if _, ok := structs["Config"]; !ok {
		t.Fatal("config.go has no Config struct")
	}
	var schema map[string]any
	dt, err := os.ReadFile(chartDir + "/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(dt, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	cfgSchema := dig(schema, "properties", "config").(map[string]any)

	var problems []string
	var walk func(path, structName string, node map[string]any)
	walk = func(path, structName string, node map[string]any) {
		if node["additionalProperties"] != false {
			problems = append(problems, path+": schema allows unknown keys")
		}
		props, _ := node["properties"].(map[string]any)
		fields := structs[structName]
		for _, f := range fields {
			p := path + "." + f.key
			sub, ok := props[f.key].(map[string]any)
			if !ok {
				problems = append(problems, p+": in config.go, not in the schema")
				continue
			}
			if _, forbidden := sub["not"]; forbidden {
				continue
			}
			switch {
			case f.structName != "" && !f.slice:
				walk(p, f.structName, sub)
			case f.structName != "" && f.slice:
				items, _ := sub["items"].(map[string]any)
				if items == nil {
					problems = append(problems, p+": schema has no items")
					continue
				}
				walk(p+"[]", f.structName, items)
			}
		}
		keys := make([]string, 0, len(props))
		for k := range props {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !slices.ContainsFunc(fields, func(f field) bool { return f.key == k }) {
				problems = append(problems, path+"."+k+": in the schema, not in config.go")
			}
		}
	}
	walk("config", "Config", cfgSchema)
	for _, p := range problems {
		t.Error(p)
	}
}

type field struct {
	key        string
	structName string // a struct of config.go, "" for scalars and maps
	slice      bool
}

// parseStructs reads the struct types of a Go file: struct name → fields
// with their yaml keys.
func parseStructs(t *testing.T, path string) map[string][]field {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]field{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		var fields []field
		for _, fl := range st.Fields.List {
			if fl.Tag == nil {
				continue
			}
			tag := reflect.StructTag(strings.Trim(fl.Tag.Value, "`")).Get("yaml")
			key, _, _ := strings.Cut(tag, ",")
			if key == "" || key == "-" {
				continue
			}
			fd := field{key: key}
			typ := fl.Type
			if star, ok := typ.(*ast.StarExpr); ok {
				typ = star.X
			}
			if arr, ok := typ.(*ast.ArrayType); ok {
				fd.slice = true
				typ = arr.Elt
			}
			if id, ok := typ.(*ast.Ident); ok && id.Obj != nil {
				if _, isStruct := id.Obj.Decl.(*ast.TypeSpec).Type.(*ast.StructType); isStruct {
					fd.structName = id.Name
				}
			}
			fields = append(fields, fd)
		}
		out[ts.Name.Name] = fields
		return false
	})
	return out
}
