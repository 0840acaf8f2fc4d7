package idp

import (
	"errors"
	"net/url"
	"reflect"
	"testing"
	"time"
)

func TestParseLoginRequest(t *testing.T) {
	tests := []struct {
		query string
		want  LoginRequest
		bad   bool
	}{
		{query: "return_to=/x", want: LoginRequest{}},
		{query: "acr_values=urn:mfa+urn:hwk&max_age=600&prompt=login", want: LoginRequest{ACRValues: []string{"urn:mfa", "urn:hwk"}, MaxAge: 10 * time.Minute, Prompt: []string{"login"}}},
		{query: "prompt=login+select_account+login", want: LoginRequest{Prompt: []string{"login", "select_account"}}},
		{query: "acr_values=&max_age=&prompt=", want: LoginRequest{}},
		{query: "prompt=none", want: LoginRequest{Prompt: []string{"none"}}},
		{query: "prompt=none+none", want: LoginRequest{Prompt: []string{"none"}}},
		{query: "prompt=none+login", bad: true},
		{query: "prompt=consent+none", bad: true},
		{query: "prompt=login%0Aconsent", want: LoginRequest{Prompt: []string{"login", "consent"}}}, // white space separates
		{query: "prompt=login%00", bad: true},
		{query: "max_age=0", bad: true},
		{query: "max_age=-1", bad: true},
		{query: "max_age=10s", bad: true},
		{query: "max_age=99999999999", bad: true},
		{query: "acr_values=a%00b", bad: true},
		{query: "acr_values=%C3%A9", bad: true},
		{query: "acr_values=1+2+3+4+5+6+7+8+9", bad: true},
		{query: "acr_values=a&acr_values=b", bad: true},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseLoginRequest(q)
		if tt.bad {
			if !errors.Is(err, ErrBadLoginRequest) {
				t.Errorf("ParseLoginRequest(%q) = %+v, %v; want ErrBadLoginRequest", tt.query, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseLoginRequest(%q) = %+v, %v; want %+v", tt.query, got, err, tt.want)
		}
	}
}

func TestLoginRequestCovers(t *testing.T) {
	asked := LoginRequest{ACRValues: []string{"urn:mfa", "urn:hwk"}, MaxAge: 5 * time.Minute, Prompt: []string{"login"}}
	tests := []struct {
		want LoginRequest
		ok   bool
	}{
		{LoginRequest{}, true},
		{LoginRequest{ACRValues: []string{"urn:mfa"}}, true},
		{LoginRequest{ACRValues: []string{"urn:mfa", "urn:other"}}, false},
		{LoginRequest{MaxAge: 10 * time.Minute}, true},
		{LoginRequest{MaxAge: time.Minute}, false},
		{LoginRequest{Prompt: []string{"login"}}, true},
		{LoginRequest{Prompt: []string{"select_account"}}, false},
	}
	for _, tt := range tests {
		if got := asked.Covers(tt.want); got != tt.ok {
			t.Errorf("%+v.Covers(%+v) = %v, want %v", asked, tt.want, got, tt.ok)
		}
	}
	if (LoginRequest{}).Covers(LoginRequest{MaxAge: time.Minute}) {
		t.Error("a login that asked for no max_age covers one that needs it")
	}
}
