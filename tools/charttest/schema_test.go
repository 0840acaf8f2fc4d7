package charttest

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestSchemaMirrorsConfig keeps values.schema.json's `config` in step with
// the binary's configuration keys: every key has a schema property at the
// same path and the schema has no key the binary would reject. The keys
// come from the generated reference in docs/configuration.md, which the
// config package's own test keeps equal to the options types. Keys the
// chart sets itself, or keeps out of the ConfigMap (inline secrets), are in
// the schema as forbidden ("not": {}), which still counts as mirrored.
func TestSchemaMirrorsConfig(t *testing.T) {
	root := referenceKeys(t, "../../docs/configuration.md")
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
	var walk func(path string, k *keyNode, node map[string]any)
	walk = func(path string, k *keyNode, node map[string]any) {
		if node["additionalProperties"] != false {
			problems = append(problems, path+": schema allows unknown keys")
		}
		props, _ := node["properties"].(map[string]any)
		for _, name := range slices.Sorted(maps.Keys(k.children)) {
			child := k.children[name]
			p := path + "." + name
			sub, ok := props[name].(map[string]any)
			if !ok {
				problems = append(problems, p+": a configuration key, not in the schema")
				continue
			}
			if _, forbidden := sub["not"]; forbidden || len(child.children) == 0 {
				continue
			}
			if child.list {
				items, _ := sub["items"].(map[string]any)
				if items == nil {
					problems = append(problems, p+": schema has no items")
					continue
				}
				walk(p+"[]", child, items)
				continue
			}
			walk(p, child, sub)
		}
		for _, name := range slices.Sorted(maps.Keys(props)) {
			if _, ok := k.children[name]; !ok {
				problems = append(problems, path+"."+name+": in the schema, not a configuration key")
			}
		}
	}
	walk("config", root, cfgSchema)
	for _, p := range problems {
		t.Error(p)
	}
}

// keyNode is one level of the configuration's key tree.
type keyNode struct {
	children map[string]*keyNode
	// list: the key holds a list of objects (routes[n].path).
	list bool
}

// referenceKeys reads the key column of the generated reference table in
// path ("| `session.redis.url` | …", "| `routes[n].path` | …") into a tree.
func referenceKeys(t *testing.T, path string) *keyNode {
	t.Helper()
	dt, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	root := &keyNode{children: map[string]*keyNode{}}
	n := 0
	for _, line := range strings.Split(string(dt), "\n") {
		rest, ok := strings.CutPrefix(line, "| `")
		if !ok {
			continue
		}
		key, _, ok := strings.Cut(rest, "`")
		if !ok {
			continue
		}
		n++
		node := root
		for _, part := range strings.Split(key, ".") {
			name, list := strings.CutSuffix(part, "[n]")
			child := node.children[name]
			if child == nil {
				child = &keyNode{children: map[string]*keyNode{}}
				node.children[name] = child
			}
			child.list = child.list || list
			node = child
		}
	}
	if n < 50 {
		t.Fatalf("%s: only %d keys in the reference table; is it still generated there?", path, n)
	}
	return root
}
