package proxy

import (
	"net/http"
	"strings"
)

// restrictUpgrade lets WebSocket be the only protocol a request can switch
// to. A tunnel escapes everything tokenrelay does per request (routing,
// CSRF, the body limit, the access log), so it is opened only for the one
// protocol browsers need. A request offering WebSocket (alone or among
// other offers, in any case) is forwarded asking for "websocket" only; a
// request offering anything else (h2c, an unknown protocol) loses its
// Upgrade header and is forwarded as the plain HTTP request it also is, as
// RFC 9110 §7.8 lets a server that ignores the offer do. ReverseProxy then
// refuses (502) an upstream that switches protocols anyway.
func restrictUpgrade(h http.Header) {
	offers, ok := h["Upgrade"]
	if !ok {
		return
	}
	if len(offers) == 1 && offers[0] == "websocket" {
		return
	}
	if offersWebSocket(offers) {
		h.Set("Upgrade", "websocket")
		return
	}
	delete(h, "Upgrade")
}

// offersWebSocket reports whether an Upgrade header's protocol list names
// websocket.
func offersWebSocket(offers []string) bool {
	for _, line := range offers {
		for offer := range strings.SplitSeq(line, ",") {
			if strings.EqualFold(strings.Trim(offer, " \t"), "websocket") {
				return true
			}
		}
	}
	return false
}
