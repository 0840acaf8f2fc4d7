package idp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Capture reads a captured login answer (token capture for custom
// backends, e.g. Xano's {"accessToken": ..., "refreshToken": ...,
// "user": {...}}). It returns ok=false and no error when body is a JSON
// object without the mapped access token; an error when body is not a JSON
// object, is larger than MaxResponseBytes, or has token fields of the wrong
// type. Otherwise it returns the token (lifetime as for token responses),
// the identity (Subject mapping, else the access token's JWT sub), and body
// with the access, refresh and ID token fields removed: everything else,
// including the expires-in field, is kept in its original order and
// spelling.
func (p *Provider) Capture(body []byte) (tok *Token, id *Identity, stripped []byte, ok bool, err error) {
	if int64(len(body)) > p.opts.MaxResponseBytes {
		return nil, nil, nil, false, fmt.Errorf("idp: capture: %w (over %d bytes)", errTooLarge, p.opts.MaxResponseBytes)
	}
	obj, err := decodeObject(body)
	if err != nil {
		return nil, nil, nil, false, fmt.Errorf("idp: capture: %w", err)
	}
	m := p.opts.Custom.Mapping
	access, err := stringAt(obj, m.AccessToken)
	if err != nil {
		return nil, nil, nil, false, fmt.Errorf("idp: capture: %w", err)
	}
	if access == "" {
		return nil, nil, nil, false, nil
	}
	tok, err = p.tokenFromObject(obj)
	if err != nil {
		return nil, nil, nil, false, fmt.Errorf("idp: capture: %w", err)
	}
	stripped, err = stripFields(body, []string{m.AccessToken, m.RefreshToken, m.IDToken})
	if err != nil {
		return nil, nil, nil, false, fmt.Errorf("idp: capture: %w", err)
	}
	return tok, p.identityFromToken(tok), stripped, true, nil
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
