package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRefusedBackchannelLogoutsLogSparingly: anyone can post forged logout
// tokens, so refusals are warned about once per refusedLogoutLogEvery, each
// warning counting the refusals it stands for; every post is still answered
// 400.
func TestRefusedBackchannelLogoutsLogSparingly(t *testing.T) {
	atAuthTestNow(t, func(t *testing.T) {
		f := newAuthFixture(t, func(o *authOptions) { o.Now = time.Now })
		f.p.logoutErr = errors.New("idp: logout token: bad signature")
		post := func(n int) {
			t.Helper()
			for range n {
				r := httptest.NewRequest("POST", "/.auth/backchannel-logout", strings.NewReader("logout_token=forged"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if w := f.serve(r); w.Code != http.StatusBadRequest {
					t.Fatalf("forged logout token: %d, want 400", w.Code)
				}
			}
		}
		warnings := func() []float64 {
			var counts []float64
			for line := range strings.SplitSeq(strings.TrimSpace(f.logs.String()), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "auth: back-channel logout token refused" {
					continue
				}
				if m["level"] != "WARN" {
					t.Errorf("refusal logged at %v, want WARN", m["level"])
				}
				n, _ := m["refused_since_last_warning"].(float64)
				counts = append(counts, n)
			}
			return counts
		}

		post(100)
		if got := warnings(); len(got) != 1 || got[0] != 0 {
			t.Fatalf("after 100 refusals in one instant: warnings %v, want one (counting 0 before it)", got)
		}
		time.Sleep(refusedLogoutLogEvery - time.Nanosecond)
		post(10)
		if got := warnings(); len(got) != 1 {
			t.Fatalf("just before the interval ends: %d warnings, want still 1", len(got))
		}
		time.Sleep(time.Nanosecond)
		post(1)
		if got := warnings(); len(got) != 2 || got[1] != 109 {
			t.Fatalf("after the interval: warnings %v, want a second one counting the 109 held back", got)
		}
	})
}
