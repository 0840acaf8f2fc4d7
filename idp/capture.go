package idp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Captured is what Capture found in an answer that holds tokens.
type Captured struct {
	Token    *Token
	Identity *Identity
	// Body is the answer without the access, refresh and ID token fields:
	// everything else, including the expires-in field, is kept in its
	// original order and spelling.
	Body []byte
}

// Capture reads an answer of a token-capture route (custom backends, e.g.
// Xano's {"accessToken": ..., "refreshToken": ..., "user": {...}}). It is
// built so that no token goes unnoticed, whatever the answer's status or
// Content-Type:
//
//   - nil and no error only when body provably holds no token: a JSON
//     object with no non-empty value at any mapped token path (access,
//     refresh, ID token), or something else that names none of their
//     fields;
//   - an error when body may hold tokens Capture cannot use: larger than
//     MaxResponseBytes; not a JSON object yet naming a token field (an
//     array, an anti-XSSI prefix, JSON a stricter parser refuses); a token
//     field of the wrong type; a refresh or ID token without the access
//     token;
//   - otherwise the token (lifetime as for token responses), the identity
//     (Subject mapping, else the access token's JWT sub), and the body
//     without the token fields.
func (p *Provider) Capture(body []byte) (*Captured, error) {
	if int64(len(body)) > p.opts.MaxResponseBytes {
		return nil, fmt.Errorf("idp: capture: %w (over %d bytes)", errTooLarge, p.opts.MaxResponseBytes)
	}
	m := p.opts.Custom.Mapping
	obj, err := decodeObject(body)
	if err != nil {
		if p.namesTokenField(body) {
			return nil, fmt.Errorf("idp: capture: %w, yet it names a token field", err)
		}
		return nil, nil
	}
	access, err := stringAt(obj, m.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("idp: capture: %w", err)
	}
	if access == "" {
		if err := tokensWithoutAccess(obj, m); err != nil {
			return nil, fmt.Errorf("idp: capture: %w", err)
		}
		return nil, nil
	}
	tok, err := p.tokenFromObject(obj)
	if err != nil {
		return nil, fmt.Errorf("idp: capture: %w", err)
	}
	stripped, err := stripFields(body, []string{m.AccessToken, m.RefreshToken, m.IDToken})
	if err != nil {
		return nil, fmt.Errorf("idp: capture: %w", err)
	}
	return &Captured{Token: tok, Identity: p.identityFromToken(tok), Body: stripped}, nil
}

// tokensWithoutAccess fails when an answer without an access token still
// holds a refresh or ID token (or a token field of the wrong type).
func tokensWithoutAccess(obj map[string]any, m ResponseMapping) error {
	for _, path := range []string{m.RefreshToken, m.IDToken} {
		s, err := stringAt(obj, path)
		if err != nil {
			return err
		}
		if s != "" {
			return &FieldError{Field: m.AccessToken, Problem: "missing, while " + path + " holds a token"}
		}
	}
	return nil
}

// namesTokenField reports whether body, which is not a JSON object, holds
// the name of a mapped token field (its last path element) as a JSON
// string: a lenient reader could still find the token there.
func (p *Provider) namesTokenField(body []byte) bool {
	m := p.opts.Custom.Mapping
	for _, path := range []string{m.AccessToken, m.RefreshToken, m.IDToken} {
		if path == "" {
			continue
		}
		name := path[strings.LastIndexByte(path, '.')+1:]
		if bytes.Contains(body, []byte(`"`+name+`"`)) {
			return true
		}
	}
	return false
}

// stripFields re-writes the JSON object in data without the members at the
// given dotted paths. Other members keep their order and their original
// bytes; only whitespace between members may change. data must be valid
// JSON (Capture has decoded it already).
func stripFields(data []byte, paths []string) ([]byte, error) {
	split := make([][]string, 0, len(paths))
	for _, p := range paths {
		split = append(split, strings.Split(p, "."))
	}
	return stripObject(data, split)
}

// stripObject drops from the JSON value data the members at paths (split
// dotted paths). Values that are not objects are returned as they are.
func stripObject(data []byte, paths [][]string) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if len(paths) == 0 || len(trimmed) == 0 || trimmed[0] != '{' {
		return data, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, err
	}
	var out bytes.Buffer
	out.WriteByte('{')
	first := true
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := kt.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		drop := false
		var sub [][]string
		for _, p := range paths {
			switch {
			case p[0] != key:
			case len(p) == 1:
				drop = true
			default:
				sub = append(sub, p[1:])
			}
		}
		if drop {
			continue
		}
		val, err := stripObject(raw, sub)
		if err != nil {
			return nil, err
		}
		if !first {
			out.WriteByte(',')
		}
		first = false
		writeJSONString(&out, key)
		out.WriteByte(':')
		out.Write(val)
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, err
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

// writeJSONString writes s as a JSON string without HTML escaping, so keys
// keep their spelling.
func writeJSONString(out *bytes.Buffer, s string) {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // encoding a string cannot fail
	out.Truncate(out.Len() - 1) // Encode's newline
}
