package codemap

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tokenrelay/tokenrelay/"

// rule is one line of the code map: the packages it names and what they
// may import (any: no limit).
type rule struct {
	allowed []string
	any     bool
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readCodeMap parses the table of docs/code-map.md into a rule per package.
func readCodeMap(t *testing.T) map[string]rule {
	t.Helper()
	f, err := os.Open("../../docs/code-map.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules := map[string]rule{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "|")
		if len(cells) != 5 || !strings.Contains(cells[1], "`") {
			continue
		}
		may := cells[3]
		r := rule{any: strings.Contains(may, "every package") || strings.Contains(may, "any")}
		for _, m := range backticked.FindAllStringSubmatch(may, -1) {
			r.allowed = append(r.allowed, m[1])
		}
		for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
			rules[m[1]] = r
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rules
}

// TestCodeMapCoversEveryPackage: a package without a line in the code map,
// or one importing a package of ours its line does not allow, fails here.
func TestCodeMapCoversEveryPackage(t *testing.T) {
	rules := readCodeMap(t)
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		if strings.Contains(pkg, "node_modules") {
			continue
		}
		r, ok := rules[pkg]
		if !ok {
			t.Errorf("docs/code-map.md has no line for %s", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			own, ok := strings.CutPrefix(imp, module)
			if !ok || r.any || slices.Contains(r.allowed, own) {
				continue
			}
			t.Errorf("%s imports %s, which its line in docs/code-map.md does not allow", pkg, own)
		}
	}
}
