package claims

import (
	"encoding/json"
	"strings"
	"testing"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLookup pins that an exact claim name wins over a dotted path, and
// that a path walks nested objects only.
func TestLookup(t *testing.T) {
	c := decode(t, `{"https://example.com/roles":["a"],"realm_access":{"roles":["b"]},"a.b":"exact","a":{"b":"nested"},"s":"x"}`)
	tests := []struct {
		name string
		want string
		ok   bool
	}{
		{"https://example.com/roles", "[a]", true},
		{"realm_access.roles", "[b]", true},
		{"a.b", "exact", true},
		{"s.x", "", false},
		{"realm_access.missing", "", false},
		{"missing", "", false},
	}
	for _, tt := range tests {
		v, ok := Lookup(c, tt.name)
		got := ""
		if ok {
			if list, isList := v.([]any); isList {
				got = "[" + list[0].(string) + "]"
			} else {
				got = v.(string)
			}
		}
		if got != tt.want || ok != tt.ok {
			t.Errorf("Lookup(%q) = %q, %v, want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
	if got := Root("realm_access.roles"); got != "realm_access" {
		t.Errorf("Root = %q, want realm_access", got)
	}
	if got := Root("groups"); got != "groups" {
		t.Errorf("Root = %q, want groups", got)
	}
}

// TestValues pins how scalars, arrays, numbers and booleans read.
func TestValues(t *testing.T) {
	c := decode(t, `{"s":"x","n":42,"f":1.5,"t":true,"ts":"TRUE","l":["a",1,{"o":1},["n"]],"o":{"k":"v"},"big":1e3}`)
	scalars := map[string]string{"s": "x", "n": "42", "f": "1.5", "t": "true"}
	for name, want := range scalars {
		if got, ok := Scalar(c[name]); !ok || got != want {
			t.Errorf("Scalar(%s) = %q, %v, want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"l", "o", "missing"} {
		if got, ok := Scalar(c[name]); ok {
			t.Errorf("Scalar(%s) = %q, want not a scalar", name, got)
		}
	}
	if got, _ := Scalar(2.5); got != "2.5" {
		t.Errorf("Scalar(2.5) = %q", got)
	}
	is := func(want string) func(string) bool { return func(s string) bool { return s == want } }
	anyTests := []struct {
		claim, value string
		want         bool
	}{
		{"s", "x", true}, {"s", "y", false}, {"l", "a", true}, {"l", "1", true},
		{"l", "n", false}, {"o", "v", false}, {"n", "42", true}, {"missing", "", false},
	}
	for _, tt := range anyTests {
		if got := Any(c[tt.claim], is(tt.value)); got != tt.want {
			t.Errorf("Any(%s, %q) = %v, want %v", tt.claim, tt.value, got, tt.want)
		}
	}
	if !Any([]string{"p", "q"}, is("q")) {
		t.Error("Any([]string) misses an element")
	}
	numbers := map[string]int64{"n": 42, "f": 1, "big": 1000}
	for name, want := range numbers {
		if got, ok := Number(c[name]); !ok || got != want {
			t.Errorf("Number(%s) = %d, %v, want %d", name, got, ok, want)
		}
	}
	if got, ok := Number("1700000000"); !ok || got != 1700000000 {
		t.Errorf("Number(string) = %d, %v", got, ok)
	}
	if _, ok := Number(c["s"]); ok {
		t.Error("Number(\"x\") reported a number")
	}
	if !True(c["t"]) || !True(c["ts"]) || True(c["s"]) || True(nil) {
		t.Error("True misreads a boolean claim")
	}
}
