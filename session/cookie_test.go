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
		{"defaults of the product", CookieOptions{Secure: true, SameSite: http.SameSiteLaxMode}, 24 * time.Hour,
			"__Host-tokenrelay=" + tk.Encode() + "; Path=/; Max-Age=86400; HttpOnly; Secure; SameSite=Lax"},
		{"strict, custom name, not secure", CookieOptions{Name: "sid", SameSite: http.SameSiteStrictMode}, 90 * time.Second,
			"sid=" + tk.Encode() + "; Path=/; Max-Age=90; HttpOnly; SameSite=Strict"},
		{"max-age rounds up", CookieOptions{Secure: true, SameSite: http.SameSiteNoneMode}, 1500 * time.Millisecond,
			"__Host-tokenrelay=" + tk.Encode() + "; Path=/; Max-Age=2; HttpOnly; Secure; SameSite=None"},
		{"browser-session cookie", CookieOptions{Secure: true, SameSite: http.SameSiteLaxMode}, 0,
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
			if c.Domain != "" || c.Path != "/" || !c.HttpOnly || c.Secure != tt.opts.Secure || c.SameSite != tt.opts.SameSite {
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
	CookieOptions{Secure: true, SameSite: http.SameSiteLaxMode}.Clear(rec)
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
