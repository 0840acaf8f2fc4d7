package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
)

// TestLeaks checks the leak detector the other tests trust: it must flag a
// token value or anything JWT-shaped in any header or body, and nothing
// else.
func TestLeaks(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	u, _ := url.Parse("http://127.0.0.1:1/x")
	resp := func(h http.Header, body string) []observed {
		return []observed{{Method: "GET", URL: u, Status: 200, Header: h, Body: []byte(body)}}
	}
	tests := []struct {
		name    string
		in      []observed
		secrets []string
		want    int
	}{
		{"clean", resp(http.Header{"Set-Cookie": {"__Host-tokenrelay=abc; Path=/"}}, `{"sub":"alice"}`), []string{"opaque-token"}, 0},
		{"JWT in body", resp(nil, `{"access_token":"`+jwt+`"}`), nil, 1},
		{"JWT in Location", resp(http.Header{"Location": {"/cb#id_token=" + jwt}}, ""), nil, 1},
		{"JWT in cookie", resp(http.Header{"Set-Cookie": {"t=" + jwt}}, ""), nil, 1},
		{"opaque token in body", resp(nil, "refresh: opaque-token"), []string{"opaque-token"}, 1},
		{"empty secret ignored", resp(nil, "anything"), []string{""}, 0},
	}
	for _, tt := range tests {
		if got := leaks(tt.in, tt.secrets...); len(got) != tt.want {
			t.Errorf("%s: leaks = %q, want %d findings", tt.name, got, tt.want)
		}
	}
}

// TestParseForms checks the generic form parser on the shapes the
// provider's pages use: quoted and unquoted attributes, entities, hidden
// inputs, the first named submit button as if clicked, other buttons left
// out, relative actions resolved.
func TestParseForms(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:9/interaction/abc")
	page := observed{URL: u, Body: []byte(`<html><body>
<form autocomplete="off" action="/interaction/abc/login" method="post">
  <input type="hidden" name="prompt" value="login"/>
  <input required type=text name=login placeholder="Enter any login" autofocus="on">
  <input required type="password" name="password" placeholder="and password" >
  <input type="hidden" name='q' value="a&amp;b">
  <button type="button" name="help">?</button>
  <button name="logout" value="yes">Yes</button>
  <button type="submit" name="logout" value="no">No</button>
</form>
<form action="search"><input name="s" value="x"></form>
</body></html>`)}
	forms := parseForms(page)
	if len(forms) != 2 {
		t.Fatalf("parseForms found %d forms, want 2", len(forms))
	}
	f := forms[0]
	if got, want := f.Action.String(), "http://127.0.0.1:9/interaction/abc/login"; got != want || f.Method != http.MethodPost {
		t.Errorf("form 0 = %s %s, want POST %s", f.Method, got, want)
	}
	keys := make([]string, 0, len(f.Values))
	for k := range f.Values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"login", "logout", "password", "prompt", "q"}; !slices.Equal(keys, want) {
		t.Errorf("form 0 inputs = %q, want %q", keys, want)
	}
	if got := f.Values["logout"]; !slices.Equal(got, []string{"yes"}) {
		t.Errorf("submit button values = %q, want only the first one's [yes]", got)
	}
	if got := f.Values.Get("q"); got != "a&b" {
		t.Errorf("entity-decoded value = %q, want %q", got, "a&b")
	}
	if got, want := forms[1].Action.String(), "http://127.0.0.1:9/interaction/search"; got != want || forms[1].Method != http.MethodGet {
		t.Errorf("form 1 = %s %s, want GET %s", forms[1].Method, got, want)
	}
	if p, ok := firstPostForm(page); !ok || p.Action.String() != f.Action.String() {
		t.Errorf("firstPostForm = %v %v, want form 0", p.Action, ok)
	}
}
