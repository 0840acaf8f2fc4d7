package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServerSentEvents: an event the upstream flushed reaches the client
// while the upstream is still writing, even with no FlushInterval.
func TestServerSentEvents(t *testing.T) {
	release := make(chan struct{})
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "data: last\n\n")
	})
	e := newPxEnv(t, Options{Routes: []Route{{Name: "events", Path: "/events", Upstream: up.url().String()}}})
	tk := e.sessions.addToken(t, pxToken)

	r := withTicket(e.req(t, http.MethodGet, "/events", nil), tk)
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	br := bufio.NewReader(res.Body)
	got := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if line != "data: first\n" {
			t.Errorf("first line = %q, want %q", line, "data: first\n")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first event did not arrive while the upstream was still streaming")
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "\ndata: last\n\n" {
		t.Errorf("rest = %q, want %q", rest, "\ndata: last\n\n")
	}
}

// TestWebSocketEcho upgrades through the proxy with a raw handshake and
// echoes bytes both ways.
func TestWebSocketEcho(t *testing.T) {
	upstreamAuth := make(chan string, 1)
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		upstreamAuth <- r.Header.Get("Authorization")
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		_ = brw.Flush()
		// Echo until the client closes.
		_, _ = io.Copy(conn, brw)
	})
	e := newPxEnv(t, Options{Routes: []Route{{Name: "ws", Path: "/ws", Upstream: up.url().String()}}})
	tk := e.sessions.addToken(t, pxToken)

	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	handshake := "GET /ws HTTP/1.1\r\nHost: " + e.srv.Listener.Addr().String() + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Cookie: " + "__Host-tokenrelay=" + tk.Encode() + "\r\n\r\n"
	if _, err := io.WriteString(conn, handshake); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", res.StatusCode)
	}
	if got := res.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Sec-WebSocket-Accept = %q", got)
	}
	if got, want := <-upstreamAuth, "Bearer "+pxToken.Reveal(); got != want {
		t.Errorf("upstream Authorization = %q, want %q", got, want)
	}
	for _, msg := range []string{"ping", "second frame"} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatal(err)
		}
		if string(buf) != msg {
			t.Errorf("echo = %q, want %q", buf, msg)
		}
	}
	conn.Close()
	// The access log line is written once the tunnel closes.
	line := e.logs.waitAccess(t, 1)[0]
	if line["status"] != float64(101) || line["route"] != "ws" {
		t.Errorf("access log = %v, want status 101 route ws", line)
	}
	if got := e.requests("ws", "101"); got != 1 {
		t.Errorf("requests{ws,101} = %v, want 1", got)
	}
}

// TestClientGoneMidStream: a client that leaves while the body streams is
// recorded as 499 (ReverseProxy aborts the handler with a panic under a
// real server), without an error-level log line.
func TestClientGoneMidStream(t *testing.T) {
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	})
	e := newPxEnv(t, Options{Routes: []Route{{Name: "events", Path: "/events", Upstream: up.url().String(), Auth: AuthNone}}})

	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first line = %q, %v", line, err)
	}
	conn.Close()

	access := e.logs.waitAccess(t, 1)
	if got := access[0]["status"]; got != float64(StatusClientClosedRequest) {
		t.Errorf("access log status = %v, want 499", got)
	}
	if got := e.requests("events", "499"); got != 1 {
		t.Errorf("requests{events,499} = %v, want 1", got)
	}
	for _, l := range e.logs.lines(t) {
		if l["level"] == "ERROR" {
			t.Errorf("error-level log line: %v", l)
		}
	}
}
