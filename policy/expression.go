package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// The variables an expression sees. request.* are declared as qualified
// names rather than one object, so the checker knows each one's type and
// rejects a misspelt field at start.
const (
	varClaims  = "claims"
	varMethod  = "request.method"
	varPath    = "request.path"
	varHeaders = "request.headers"
)

// newEnv builds the CEL environment every expression is compiled in. The
// extension libraries are pinned to a version, so upgrading cel-go cannot
// change what a deployed expression means.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable(varClaims, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varMethod, cel.StringType),
		cel.Variable(varPath, cel.StringType),
		cel.Variable(varHeaders, cel.MapType(cel.StringType, cel.StringType)),
		cel.CustomTypeAdapter(claimAdapter{types.DefaultTypeAdapter}),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(cel.OptionalTypesVersion(2)),
		ext.Strings(ext.StringsVersion(4)),
		ext.Sets(ext.SetsVersion(0)),
	)
}

// expression is one compiled CEL expression. Both programs are safe for
// concurrent use.
type expression struct {
	// rule names the expression in decisions ("route.expression").
	rule string
	// prog evaluates a request; partial evaluates without one, treating
	// request.* as unknown (Preview).
	prog, partial cel.Program
	// claims are the claims the expression names (claims.x, claims["x"]).
	claims []string
}

// compileExpression parses and type-checks src. The error is CEL's own
// text, each issue with its line and column and the line it is on, for
// check-config, which puts the expression's key path before it.
func compileExpression(env *cel.Env, src string) (*cel.Ast, error) {
	ast, iss := env.CompileSource(common.NewStringSource(src, "expression"))
	if iss.Err() != nil {
		return nil, issuesError(src, iss)
	}
	// dyn is accepted (claims.is_admin is one); whether it is a bool is
	// then known only at run time, where anything else denies.
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("the expression must give a bool, it gives %s", cel.FormatCELType(ast.OutputType()))
	}
	return ast, nil
}

// issuesError renders CEL's issues without the source's name (CEL would
// say "ERROR: <input>:1:28:"; the caller knows the key path): "line 1,
// column 28: <message>" and the line with a caret under the column.
func issuesError(src string, iss *cel.Issues) error {
	var b strings.Builder
	lines := strings.Split(src, "\n")
	for i, e := range iss.Errors() {
		if i > 0 {
			b.WriteByte('\n')
		}
		line, col := e.Location.Line(), e.Location.Column()
		fmt.Fprintf(&b, "line %d, column %d: %s", line, col+1, e.Message)
		if line >= 1 && line <= len(lines) && len(lines[line-1]) <= maxSnippet {
			text := strings.ReplaceAll(lines[line-1], "\t", " ")
			fmt.Fprintf(&b, "\n | %s\n | %s^", text, strings.Repeat(".", utf8.RuneCountInString(prefixBytes(text, col))))
		}
	}
	return errors.New(b.String())
}

// maxSnippet bounds the source line an error quotes.
const maxSnippet = 512

// prefixBytes returns the first col runes of s.
func prefixBytes(s string, col int) string {
	n := 0
	for i := range s {
		if n == col {
			return s[:i]
		}
		n++
	}
	return s
}

// newExpression compiles src into its two programs.
func newExpression(env *cel.Env, rule, src string) (*expression, error) {
	ast, err := compileExpression(env, src)
	if err != nil {
		return nil, err
	}
	prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	partial, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize, cel.OptPartialEval))
	if err != nil {
		return nil, err
	}
	return &expression{rule: rule, prog: prog, partial: partial, claims: claimRefs(ast)}, nil
}

// claimRefs lists the claims an expression reads by a constant name:
// claims.x, claims["x"], claims.?x, claims[?"x"], has(claims.x). A claim
// reached only by iterating over claims is not seen.
func claimRefs(a *cel.Ast) []string {
	var names []string
	isClaims := func(e celast.Expr) bool { return e.Kind() == celast.IdentKind && e.AsIdent() == varClaims }
	celast.PreOrderVisit(a.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.SelectKind:
			if sel := e.AsSelect(); isClaims(sel.Operand()) {
				names = append(names, sel.FieldName())
			}
		case celast.CallKind:
			call := e.AsCall()
			switch call.FunctionName() {
			case operators.Index, operators.OptIndex, operators.OptSelect:
				args := call.Args()
				if len(args) == 2 && isClaims(args[0]) && args[1].Kind() == celast.LiteralKind {
					if name, ok := args[1].AsLiteral().(types.String); ok {
						names = append(names, string(name))
					}
				}
			}
		}
	}))
	return names
}

// errNotBool marks an expression whose value was not a bool at run time
// (possible through dyn claims even though it type-checked).
var errNotBool = errors.New("policy: expression did not give a bool")

// eval runs the expression for one request. Any error (a missing claim, a
// type mismatch) counts as false: a policy fails closed.
func (e *expression) eval(u *User, r *Request) (bool, error) {
	// The activation holds copies, not pointers, so u and r stay on the
	// caller's stack.
	act := activationPool.Get().(*activation)
	act.user, act.req = *u, *r
	out, _, err := e.prog.Eval(act)
	*act = activation{}
	activationPool.Put(act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, errNotBool
	}
	return bool(b), nil
}

// outcome of an evaluation without a request.
type outcome int

const (
	outcomeFalse outcome = iota
	outcomeTrue
	outcomeUnknown
)

// preview runs the expression with request.* unknown: true or false when
// the claims alone decide, unknown when the request would.
func (e *expression) preview(u *User) outcome {
	vars, err := cel.PartialVars(map[string]any{varClaims: claimsOf(u)},
		cel.AttributePattern(varMethod), cel.AttributePattern(varPath), cel.AttributePattern(varHeaders))
	if err != nil {
		return outcomeFalse
	}
	out, _, err := e.partial.Eval(vars)
	switch {
	case err != nil:
		return outcomeFalse
	case types.IsUnknown(out):
		return outcomeUnknown
	case out == types.True:
		return outcomeTrue
	}
	return outcomeFalse
}

// activation resolves the variables of one evaluation without building a
// map; instances are pooled, so evaluating allocates only what CEL itself
// needs.
type activation struct {
	user User
	req  Request
}

var activationPool = sync.Pool{New: func() any { return new(activation) }}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varClaims:
		return claimsOf(&a.user), true
	case varMethod:
		return a.req.Method, true
	case varPath:
		return a.req.Path, true
	case varHeaders:
		return headerMap{h: a.req.Header}, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// claimAdapter turns decoded claims into CEL values. The default adapter
// would see a json.Number as a string, so `claims.auth_time > 1700000000`
// would not type at run time; numbers become int (or double), and nested
// objects and arrays are wrapped so their elements go through this adapter
// too.
type claimAdapter struct{ types.Adapter }

// NativeToValue implements types.Adapter.
func (a claimAdapter) NativeToValue(v any) ref.Val {
	switch v := v.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return types.Int(n)
		}
		if f, err := v.Float64(); err == nil {
			return types.Double(f)
		}
		return types.String(v)
	case map[string]any:
		return types.NewStringInterfaceMap(a, v)
	case []any:
		return types.NewDynamicList(a, v)
	}
	return a.Adapter.NativeToValue(v)
}

// headerMap shows an http.Header to CEL as map(string, string): names in
// lower case, several values of one name joined with ", " (RFC 9110
// §5.3). Lookups scan the header without copying it; only iteration and
// whole-map operations build a real map.
type headerMap struct{ h http.Header }

var _ traits.Mapper = headerMap{}

func (m headerMap) lookup(key ref.Val) (ref.Val, bool) {
	name, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	for k, vs := range m.h {
		if len(k) == len(name) && strings.EqualFold(k, string(name)) && len(vs) > 0 {
			if len(vs) == 1 {
				return types.String(vs[0]), true
			}
			return types.String(strings.Join(vs, ", ")), true
		}
	}
	return nil, false
}

// materialize builds the whole map, for iteration, size and comparison.
func (m headerMap) materialize() ref.Val {
	out := make(map[string]string, len(m.h))
	for k, vs := range m.h {
		if len(vs) > 0 {
			out[strings.ToLower(k)] = strings.Join(vs, ", ")
		}
	}
	return types.NewStringStringMap(types.DefaultTypeAdapter, out)
}

// Find implements traits.Mapper.
func (m headerMap) Find(key ref.Val) (ref.Val, bool) { return m.lookup(key) }

// Get implements traits.Indexer.
func (m headerMap) Get(key ref.Val) ref.Val {
	v, ok := m.lookup(key)
	if !ok {
		if v != nil {
			return v
		}
		return types.NewErr("no such key: %v", key)
	}
	return v
}

// Contains implements traits.Container.
func (m headerMap) Contains(key ref.Val) ref.Val {
	v, ok := m.lookup(key)
	if !ok && v != nil {
		return v
	}
	return types.Bool(ok)
}

// Size implements traits.Sizer.
func (m headerMap) Size() ref.Val { return m.materialize().(traits.Sizer).Size() }

// Iterator implements traits.Iterable.
func (m headerMap) Iterator() traits.Iterator {
	return m.materialize().(traits.Iterable).Iterator()
}

// ConvertToNative implements ref.Val.
func (m headerMap) ConvertToNative(t reflect.Type) (any, error) {
	return m.materialize().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (m headerMap) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.MapType:
		return m
	case types.TypeType:
		return types.MapType
	}
	return types.NewErr("type conversion error from map to '%s'", t)
}

// Equal implements ref.Val.
func (m headerMap) Equal(other ref.Val) ref.Val { return m.materialize().Equal(other) }

// Type implements ref.Val.
func (m headerMap) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (m headerMap) Value() any { return m.h }
