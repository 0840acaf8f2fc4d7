package proxy

import "strings"

// userAgentSummary names the browser and system of a User-Agent header in a
// few words ("Chrome 131 on Linux"), for the admin API's session list:
// enough to tell a user's sessions apart, without keeping the whole header
// (long, and close to a fingerprint).
func userAgentSummary(ua string) string {
	if ua == "" {
		return ""
	}
	browser := "other"
	for _, b := range [...]struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"},
		{"Chrome/", "Chrome"}, {"Version/", "Safari"}, {"curl/", "curl"},
	} {
		if v, ok := productVersion(ua, b.token); ok {
			browser = b.name + " " + v
			break
		}
	}
	for _, s := range [...]struct{ token, name string }{
		{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iPadOS"}, {"CrOS", "ChromeOS"},
		{"Windows", "Windows"}, {"Mac OS X", "macOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, s.token) {
			return browser + " on " + s.name
		}
	}
	return browser
}

// productVersion returns the major version after token ("Chrome/131.0" →
// "131"), at most 6 digits.
func productVersion(ua, token string) (string, bool) {
	i := strings.Index(ua, token)
	if i < 0 {
		return "", false
	}
	v := ua[i+len(token):]
	n := 0
	for n < len(v) && n < 6 && v[n] >= '0' && v[n] <= '9' {
		n++
	}
	if n == 0 {
		return "", false
	}
	return v[:n], true
}
