package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

func TestCookieSetAndReadBack(t *testing.T) {
	tk, err := NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		opts   CookieOptions
		maxAge time.Duration
		want   string
	}{
		{"defaults of the product", CookieOptions{}, 24 * time.Hour,
			"__Host-tokenrelay=" + tk.Encode() + "; Path=/; Max-Age=86400; HttpOnly; Secure; SameSite=Lax"},
		{"strict, custom name, not secure", CookieOptions{Name: "sid", Secure: new(false), SameSite: SameSiteStrict}, 90 * time.Second,
			"sid=" + tk.Encode() + "; Path=/; Max-Age=90; HttpOnly; SameSite=Strict"},
		{"max-age rounds up", CookieOptions{Secure: new(true), SameSite: SameSiteLax}, 1500 * time.Millisecond,
			"__Host-tokenrelay=" + tk.Encode() + "; Path=/; Max-Age=2; HttpOnly; Secure; SameSite=Lax"},
		{"browser-session cookie", CookieOptions{Secure: new(true), SameSite: SameSiteLax}, 0,
			"__Host-tokenrelay=" + tk.Encode() + "; Path=/; HttpOnly; Secure; SameSite=Lax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tt.opts.Set(rec, tk, tt.maxAge)
			if got := rec.Header().Values("Set-Cookie"); !slices.Equal(got, []string{tt.want}) {
				t.Fatalf("Set-Cookie = %q, want %q", got, tt.want)
			}
			c := rec.Result().Cookies()[0]
			if c.Domain != "" || c.Path != "/" || !c.HttpOnly || c.Secure != tt.opts.secure() || c.SameSite != tt.opts.sameSite() {
				t.Errorf("parsed cookie = %+v", c)
			}
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
			got, err := tt.opts.Ticket(req)
			if err != nil || got != tk {
				t.Errorf("Ticket(request with the cookie) = %v, %v; want the ticket", got, err)
			}
		})
	}
}

func TestCookieClear(t *testing.T) {
	rec := httptest.NewRecorder()
	CookieOptions{}.Clear(rec)
	want := []string{"__Host-tokenrelay=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"}
	if got := rec.Header().Values("Set-Cookie"); !slices.Equal(got, want) {
		t.Errorf("Set-Cookie = %q, want %q", got, want)
	}
}

func TestCookieTicket(t *testing.T) {
	tk, err := NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	tk2, err := NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	good, good2 := tk.Encode(), tk2.Encode()
	tests := []struct {
		name    string
		cookie  []string // Cookie header lines
		want    Ticket
		wantErr bool
	}{
		{"absent", nil, Ticket{}, true},
		{"other cookies only", []string{"a=1; b=2"}, Ticket{}, true},
		{"tampered", []string{"__Host-tokenrelay=" + good[:42] + "B"}, Ticket{}, true},
		{"truncated", []string{"__Host-tokenrelay=" + good[:30]}, Ticket{}, true},
		{"empty value", []string{"__Host-tokenrelay="}, Ticket{}, true},
		{"one good", []string{"a=1; __Host-tokenrelay=" + good + "; b=2"}, tk, false},
		{"first valid of several", []string{"__Host-tokenrelay=junk; __Host-tokenrelay=" + good + "; __Host-tokenrelay=" + good2}, tk, false},
		{"first valid across lines", []string{"__Host-tokenrelay=junk", "__Host-tokenrelay=" + good2}, tk2, false},
		{"similar name ignored", []string{"__Host-tokenrelay2=" + good}, Ticket{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, line := range tt.cookie {
				req.Header.Add("Cookie", line)
			}
			got, err := CookieOptions{}.Ticket(req)
			if tt.wantErr {
				if !errors.Is(err, ErrNoSession) {
					t.Errorf("Ticket() error = %v, want ErrNoSession", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Ticket() = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestStripCookie(t *testing.T) {
	tests := []struct {
		name string
		in   []string // nil: no Cookie header
		want []string // nil: header absent
	}{
		{"no header", nil, nil},
		{"only ours", []string{"__Host-tokenrelay=abc"}, nil},
		{"ours twice on one line", []string{"__Host-tokenrelay=a; __Host-tokenrelay=b"}, nil},
		{"middle", []string{"a=1; __Host-tokenrelay=abc; b=2"}, []string{"a=1; b=2"}},
		{"first", []string{"__Host-tokenrelay=abc; b=2"}, []string{"b=2"}},
		{"last", []string{"a=1; __Host-tokenrelay=abc"}, []string{"a=1"}},
		{"others kept byte-exact", []string{`a="x y"; __Host-tokenrelay=abc; Theme=dark%20mode; e=`}, []string{`a="x y"; Theme=dark%20mode; e=`}},
		{"line without ours untouched", []string{"a=1;b=2", "__Host-tokenrelay=abc"}, []string{"a=1;b=2"}},
		{"name inside a value untouched", []string{"x=__Host-tokenrelay;y=2"}, []string{"x=__Host-tokenrelay;y=2"}},
		{"longer name kept", []string{"__Host-tokenrelay-x=1; __Host-tokenrelay=abc"}, []string{"__Host-tokenrelay-x=1"}},
		{"several lines", []string{"a=1", "__Host-tokenrelay=abc; c=3", "d=4"}, []string{"a=1", "c=3", "d=4"}},
		{"no space after semicolon", []string{"a=1;__Host-tokenrelay=abc;b=2"}, []string{"a=1; b=2"}},
		{"login-binding cookies", []string{"a=1; __Host-tokenrelay-login-0123456789abcdef=sealed; tokenrelay-login-x=1; b=2"}, []string{"a=1; b=2"}},
		{"only a login-binding cookie", []string{"__Host-tokenrelay-login-0123456789abcdef=sealed"}, nil},
		{"prefix inside a value untouched", []string{"x=tokenrelay-login-1"}, []string{"x=tokenrelay-login-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, line := range tt.in {
				h.Add("Cookie", line)
			}
			h.Set("X-Other", "kept")
			CookieOptions{}.StripCookie(h)
			got, present := h["Cookie"]
			if tt.want == nil {
				if present {
					t.Errorf("Cookie = %q, want header deleted", got)
				}
			} else if !slices.Equal(got, tt.want) {
				t.Errorf("Cookie = %q, want %q", got, tt.want)
			}
			if h.Get("X-Other") != "kept" {
				t.Errorf("other header lost")
			}
		})
	}
}

// TestCookieTickets: every session cookie that parses is a candidate, in the
// order sent, once each and at most maxTickets of them; the count includes
// cookies that do not parse, so a caller can tell one cookie from several.
func TestCookieTickets(t *testing.T) {
	var tk [6]Ticket
	for i := range tk {
		var err error
		if tk[i], err = NewTicket(); err != nil {
			t.Fatal(err)
		}
	}
	o := CookieOptions{Secure: new(true)}
	tests := []struct {
		name        string
		values      []string
		wantTickets []Ticket
		wantCount   int
	}{
		{"none", nil, nil, 0},
		{"one", []string{tk[0].Encode()}, []Ticket{tk[0]}, 1},
		{"garbage only", []string{"garbage"}, nil, 1},
		{"garbage then good", []string{"garbage", tk[1].Encode()}, []Ticket{tk[1]}, 2},
		{"two good, in order", []string{tk[2].Encode(), tk[1].Encode()}, []Ticket{tk[2], tk[1]}, 2},
		{"duplicate once", []string{tk[0].Encode(), tk[0].Encode()}, []Ticket{tk[0]}, 2},
		{"bounded", []string{tk[0].Encode(), tk[1].Encode(), tk[2].Encode(), tk[3].Encode(), tk[4].Encode(), tk[5].Encode()},
			[]Ticket{tk[0], tk[1], tk[2], tk[3]}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for _, v := range tt.values {
				r.AddCookie(&http.Cookie{Name: DefaultCookieName, Value: v})
			}
			r.AddCookie(&http.Cookie{Name: "other", Value: tk[5].Encode()})
			got, n := o.Tickets(r)
			if !slices.Equal(got, tt.wantTickets) || n != tt.wantCount {
				t.Errorf("Tickets = %v, %d; want %v, %d", got, n, tt.wantTickets, tt.wantCount)
			}
		})
	}
}

// Tickets reads Cookie lines as net/http's CookiesNamed does: the same
// cookies count, and the same values parse, however the lines are spelled.
func TestCookieTicketsReadAsNetHTTP(t *testing.T) {
	a, _ := NewTicket()
	b, _ := NewTicket()
	n := DefaultCookieName
	lines := [][]string{
		{n + "=" + a.Encode()},
		{"  " + n + " = " + a.Encode() + " ;x=1"},
		{n + `="` + a.Encode() + `"`},
		{n + `="` + a.Encode()},
		{n + "=" + a.Encode() + `\`},
		{n + "=a b", n + "=" + b.Encode()},
		{n + "=\t" + a.Encode()},
		{"x=1;;" + n + "=" + a.Encode() + ";\t" + n + "=" + b.Encode()},
		{n + "=" + a.Encode() + "\x7f"},
		{n + "=", n, "=" + a.Encode(), ";;;", "  "},
		{"__host-tokenrelay=" + a.Encode(), "__Host-tokenrelay2=" + a.Encode()},
		{n + "=" + a.Encode() + "=" + b.Encode()},
	}
	o := CookieOptions{Secure: new(true)}
	for _, ls := range lines {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Cookie"] = ls
		var want []Ticket
		for _, c := range r.CookiesNamed(n) {
			if tk, err := ParseTicket(c.Value); err == nil && !slices.Contains(want, tk) {
				want = append(want, tk)
			}
		}
		got, count := o.Tickets(r)
		if wantCount := len(r.CookiesNamed(n)); count != wantCount || !slices.Equal(got, want) {
			t.Errorf("Cookie %q: Tickets = %v, %d; net/http reads %v, %d", ls, got, count, want, wantCount)
		}
	}
}

// TestLoginCookieNames: a login-binding cookie is named after the start of
// its state, with __Host- when secure; a state that cannot name a cookie
// names none.
func TestLoginCookieNames(t *testing.T) {
	const state = "abcdefghijklmnop-rest-of-the-state_0123456789"
	secure, plain := CookieOptions{Secure: new(true)}, CookieOptions{Secure: new(false)}
	tests := []struct {
		o     CookieOptions
		state string
		want  string
	}{
		{secure, state, "__Host-tokenrelay-login-abcdefghijklmnop"},
		{plain, state, "tokenrelay-login-abcdefghijklmnop"},
		{secure, "", ""},
		{secure, "has space in it!", ""},
		{secure, "semi;colon-state", ""},
	}
	for _, tt := range tests {
		if got := tt.o.LoginCookieName(tt.state); got != tt.want {
			t.Errorf("LoginCookieName(secure %v, %q) = %q, want %q", tt.o.secure(), tt.state, got, tt.want)
		}
		if tt.want != "" && !tt.o.IsLoginCookie(tt.want) {
			t.Errorf("IsLoginCookie(%q) = false for its own name", tt.want)
		}
	}
	for _, tt := range []struct {
		o    CookieOptions
		name string
		want bool
	}{
		{secure, "tokenrelay-login-abcdefghijklmnop", false}, // secure options read only __Host- ones
		{plain, "__Host-tokenrelay-login-abcdefghijklmnop", false},
		{secure, "__Host-tokenrelay-login-short", false},
		{secure, "__Host-tokenrelay", false},
	} {
		if got := tt.o.IsLoginCookie(tt.name); got != tt.want {
			t.Errorf("IsLoginCookie(secure %v, %q) = %v, want %v", tt.o.secure(), tt.name, got, tt.want)
		}
	}
	for name, want := range map[string]bool{
		"__Host-tokenrelay":                true,
		"__Host-tokenrelay-login-anything": true,
		"__Secure-tokenrelay-login-x":      true,
		"tokenrelay-login-x":               true,
		"tokenrelay":                       false, // not the configured name
		"app-session":                      false,
		"__Host-tokenrelay-other":          false,
	} {
		if got := secure.IsOwnCookie(name); got != want {
			t.Errorf("IsOwnCookie(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestLoginCookieAttributes pins the binding cookie byte for byte: __Host-
// with Path=/ when secure (so no sibling host can plant one), SameSite=Lax
// whatever the session cookie's SameSite (the provider's redirect back is a
// cross-site navigation), and a clearing line that matches it.
func TestLoginCookieAttributes(t *testing.T) {
	tests := []struct {
		o          CookieOptions
		set, clear string
	}{
		{CookieOptions{Secure: new(true), SameSite: SameSiteStrict},
			"__Host-tokenrelay-login-abcdefghijklmnop=v; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Lax",
			"__Host-tokenrelay-login-abcdefghijklmnop=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"},
		{CookieOptions{Secure: new(false)},
			"tokenrelay-login-abcdefghijklmnop=v; Path=/; Max-Age=600; HttpOnly; SameSite=Lax",
			"tokenrelay-login-abcdefghijklmnop=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; SameSite=Lax"},
	}
	for _, tt := range tests {
		name := tt.o.LoginCookieName("abcdefghijklmnop-state")
		rec := httptest.NewRecorder()
		tt.o.SetLogin(rec, name, "v", 10*time.Minute-time.Millisecond)
		tt.o.ClearLogin(rec, name)
		if got := rec.Header().Values("Set-Cookie"); !slices.Equal(got, []string{tt.set, tt.clear}) {
			t.Errorf("Set-Cookie = %q, want %q", got, []string{tt.set, tt.clear})
		}
	}
}
