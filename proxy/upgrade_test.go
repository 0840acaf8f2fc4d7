package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// upgradeUpstream is an upstream that switches protocols whenever it is
// asked to (or always, when eager), echoes the upgrade type it was asked
// for, and records every byte it receives after its 101.
type upgradeUpstream struct {
	*pxUpstream
	mu       sync.Mutex
	upgrades []string // the Upgrade header of each request
	tunneled []byte   // bytes read after a 101
}

func newUpgradeUpstream(t *testing.T, eager bool) *upgradeUpstream {
	u := &upgradeUpstream{}
	u.pxUpstream = newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, _ []byte) {
		asked := r.Header.Get("Upgrade")
		u.mu.Lock()
		u.upgrades = append(u.upgrades, asked)
		u.mu.Unlock()
		answer := asked
		if answer == "" && eager {
			answer = "h2c"
		}
		if answer == "" {
			_, _ = io.WriteString(w, "plain answer")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + answer + "\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		for {
			n, err := brw.Read(buf)
			u.mu.Lock()
			u.tunneled = append(u.tunneled, buf[:n]...)
			u.mu.Unlock()
			if n > 0 {
				_, _ = conn.Write(buf[:n]) // echo
			}
			if err != nil {
				return
			}
		}
	})
	return u
}

func (u *upgradeUpstream) seen() (upgrades []string, tunneled string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.upgrades...), string(u.tunneled)
}

// TestOnlyWebSocketIsTunneled: a request asking for any other protocol
// (h2c, an unknown one) is forwarded as a plain HTTP request without its
// Upgrade header, so bytes the client sends afterwards are read as HTTP by
// tokenrelay and never reach the upstream raw; websocket (in any case, or
// among other offers) is tunnelled.
func TestOnlyWebSocketIsTunneled(t *testing.T) {
	tests := []struct {
		name        string
		upgrade     string
		wantStatus  int
		wantUpgrade string // what the upstream was asked for
		wantTunnel  bool
	}{
		{"h2c", "h2c", http.StatusOK, "", false},
		{"unknown protocol", "foo/1", http.StatusOK, "", false},
		{"websocket lookalike", "websockets", http.StatusOK, "", false},
		{"two Upgrade offers without websocket", "h2c, foo/1", http.StatusOK, "", false},
		{"websocket", "websocket", http.StatusSwitchingProtocols, "websocket", true},
		{"WebSocket in another case", "WebSocket", http.StatusSwitchingProtocols, "websocket", true},
		{"websocket among other offers", "foo/1, websocket", http.StatusSwitchingProtocols, "websocket", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpgradeUpstream(t, false)
			e := newPxEnv(t, Options{Routes: []Route{{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone}}})
			conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
				"Upgrade: "+tt.upgrade+"\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			const raw = "RAW-BYTES-AFTER-UPGRADE\r\n\r\n"
			if tt.wantTunnel {
				_, _ = io.WriteString(conn, raw)
				echo := make([]byte, len(raw))
				if _, err := io.ReadFull(br, echo); err != nil || string(echo) != raw {
					t.Errorf("echo = %q, %v; want %q", echo, err, raw)
				}
			} else {
				body, _ := io.ReadAll(io.LimitReader(res.Body, 64))
				if string(body) != "plain answer" {
					t.Errorf("body = %q, want the upstream's plain answer", body)
				}
				// What the client sends next is parsed as HTTP by
				// tokenrelay and refused there.
				_, _ = io.WriteString(conn, raw)
				next, err := http.ReadResponse(br, nil)
				if err != nil || next.StatusCode != http.StatusBadRequest {
					t.Errorf("raw bytes after the answer: %v, %v; want tokenrelay's 400", next, err)
				}
			}
			conn.Close()
			upgrades, tunneled := up.seen()
			if len(upgrades) != 1 || upgrades[0] != tt.wantUpgrade {
				t.Errorf("upstream asked to upgrade to %q, want one request asking %q", upgrades, tt.wantUpgrade)
			}
			if h := up.requests()[0].Header; !tt.wantTunnel && (h.Get("Http2-Settings") != "" || strings.Contains(strings.ToLower(h.Get("Connection")), "upgrade")) {
				t.Errorf("upstream headers %v still ask for an upgrade", h)
			}
			if !tt.wantTunnel && tunneled != "" {
				t.Errorf("upstream read %q raw, want nothing", tunneled)
			}
		})
	}
}

// TestUpstreamCannotForceUpgrade: an upstream that answers 101 to a request
// that asked for no upgrade gets no tunnel: the client sees 502.
func TestUpstreamCannotForceUpgrade(t *testing.T) {
	up := newUpgradeUpstream(t, true)
	e := newPxEnv(t, Options{Routes: []Route{{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone}}})
	res, body := e.raw(t, "GET /x HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	if res.StatusCode != http.StatusBadGateway || decodeError(t, body).Error != "bad_gateway" {
		t.Errorf("answer = %d %s, want 502 bad_gateway", res.StatusCode, body)
	}
	if _, tunneled := up.seen(); tunneled != "" {
		t.Errorf("upstream read %q raw, want nothing", tunneled)
	}
}

// TestCrossSiteWebSocketAmongOffers: a WebSocket handshake gets the
// cross-origin check however its Upgrade header spells the offer, so a
// cross-site page cannot open a tunnel carrying the user's token by
// listing websocket among other protocols.
func TestCrossSiteWebSocketAmongOffers(t *testing.T) {
	up := newUpgradeUpstream(t, false)
	e := newPxEnv(t, Options{Routes: []Route{{Name: "ws", Path: "/", Upstream: up.url().String()}}})
	tk := e.sessions.addToken(t, pxToken)
	for _, offer := range []string{"websocket", "WebSocket", "foo/1, websocket", "websocket, foo/1"} {
		res, body := e.raw(t, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: "+offer+"\r\n"+
			"Sec-Fetch-Site: cross-site\r\nOrigin: https://evil.example\r\nCookie: __Host-tokenrelay="+tk.Encode()+"\r\n\r\n")
		if res.StatusCode != http.StatusForbidden || decodeError(t, body).Error != "csrf" {
			t.Errorf("cross-site handshake offering %q = %d %s, want 403 csrf", offer, res.StatusCode, body)
		}
	}
	if upgrades, _ := up.seen(); len(upgrades) != 0 {
		t.Errorf("upstream saw %d handshakes, want 0", len(upgrades))
	}
}
