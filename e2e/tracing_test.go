package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an in-process OTLP/HTTP trace receiver: it decodes the
// protobuf export requests tokenrelay's exporter posts to /v1/traces.
type otlpReceiver struct {
	URL string

	mu       sync.Mutex
	spans    []*tracepb.Span // guarded by mu
	services []string        // service.name of each batch; guarded by mu
	changed  chan struct{}   // closed and replaced at every batch; guarded by mu
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	rc := &otlpReceiver{changed: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					rc.services = append(rc.services, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				rc.spans = append(rc.spans, ss.GetSpans()...)
			}
		}
		close(rc.changed)
		rc.changed = make(chan struct{})
		rc.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

// waitSpans waits until the receiver holds a span matching want, for at
// most limit, and returns every span received so far.
func (rc *otlpReceiver) waitSpans(t *testing.T, limit time.Duration, want func(*tracepb.Span) bool) []*tracepb.Span {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		spans, changed := append([]*tracepb.Span(nil), rc.spans...), rc.changed
		rc.mu.Unlock()
		for _, s := range spans {
			if want(s) {
				return spans
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no matching span received within %s (%d spans so far)", limit, len(spans))
		}
	}
}

func spanAttr(s *tracepb.Span, key string) *commonpb.AnyValue {
	for _, a := range s.GetAttributes() {
		if a.GetKey() == key {
			return a.GetValue()
		}
	}
	return nil
}

func spanAttrString(s *tracepb.Span, key string) string { return spanAttr(s, key).GetStringValue() }

func hexID(b []byte) string { return hex.EncodeToString(b) }

// traceTree is the spans of one trace by span id.
type traceTree map[string]*tracepb.Span

func treeOf(spans []*tracepb.Span, traceID string) traceTree {
	tree := traceTree{}
	for _, s := range spans {
		if hexID(s.GetTraceId()) == traceID {
			tree[hexID(s.GetSpanId())] = s
		}
	}
	return tree
}

// children returns the spans of tree whose parent is id and whose name is
// name.
func (tree traceTree) children(id, name string) []*tracepb.Span {
	var out []*tracepb.Span
	for _, s := range tree {
		if hexID(s.GetParentSpanId()) == id && s.GetName() == name {
			out = append(out, s)
		}
	}
	return out
}

// one returns the only child of id named name, failing otherwise.
func (tree traceTree) one(t *testing.T, what, id, name string) *tracepb.Span {
	t.Helper()
	c := tree.children(id, name)
	if len(c) != 1 {
		var all []string
		for _, s := range tree {
			all = append(all, fmt.Sprintf("%s(%s←%s)", s.GetName(), hexID(s.GetSpanId())[:4], hexID(s.GetParentSpanId())))
		}
		t.Fatalf("%s: %d spans %q under %s, want 1; trace: %v", what, len(c), name, id, all)
	}
	return c[0]
}

// clientTraceparent is a sampled W3C traceparent a client sends: a fresh
// trace id and the client's own span id.
func clientTraceparent(i int) (header, traceID, spanID string) {
	traceID = fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e%04x", i)
	spanID = fmt.Sprintf("00f067aa0ba9%04x", i)
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// tracedGet sends a fetch()-style GET of /api/whoami with the browser's
// cookies and a client traceparent.
func tracedGet(t *testing.T, b *browser, relayURL, traceparent string) observed {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, relayURL+"/api/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Traceparent", traceparent)
	o, err := b.do(req)
	if err != nil || o.Status != http.StatusOK {
		t.Fatalf("GET /api/whoami: %d %v; body %s", o.Status, err, o.Body)
	}
	return o
}

// TestTracing runs tokenrelay with tracing on against an in-process OTLP
// receiver and checks the spans of a login, a proxied request and a shared
// refresh: each request's server span continues the client's traceparent;
// session load, refresh, the token endpoint call and the upstream call are
// its descendants, and the upstream and the token endpoint received the
// traceparent of their client span; of two requests sharing one refresh,
// one holds the refresh flight and the other a shared refresh span linked
// to it; the trace id is on the request's log lines; and no attribute
// holds a token, an authorization code or the session ticket.
func TestTracing(t *testing.T) {
	t.Parallel()
	rc := startOTLPReceiver(t)
	const ttl = 4 * time.Second
	s := startStack(t, stackOptions{
		AccessTTL: ttl, RefreshAhead: time.Second,
		Env: []string{"OTEL_BSP_SCHEDULE_DELAY=50", "OTEL_SERVICE_NAME=tokenrelay-e2e"},
		Configure: func(_ *stack, _ int, yaml string) string {
			return yaml + fmt.Sprintf("tracing:\n  enabled: true\n  endpoint: %q\n", rc.URL)
		},
	})
	b := newBrowser(t)

	// Login: the callback's span holds the code exchange at the token
	// endpoint, which received that call's traceparent.
	res := b.login(t, s.RelayURL, "/", "alice")
	spans := rc.waitSpans(t, 10*time.Second, func(sp *tracepb.Span) bool {
		return spanAttrString(sp, "url.path") == "/.auth/callback"
	})
	var callback *tracepb.Span
	for _, sp := range spans {
		if spanAttrString(sp, "url.path") == "/.auth/callback" {
			callback = sp
		}
	}
	if callback.GetKind() != tracepb.Span_SPAN_KIND_SERVER || len(callback.GetParentSpanId()) != 0 {
		t.Errorf("callback span: kind %v, parent %x; want a server root span (the browser sent no traceparent)", callback.GetKind(), callback.GetParentSpanId())
	}
	callbackTrace := hexID(callback.GetTraceId())
	exchange := treeOf(spans, callbackTrace).one(t, "login", hexID(callback.GetSpanId()), "provider POST")
	opSaw := opTraceparents(t, s.OP)
	if want := "00-" + callbackTrace + "-" + hexID(exchange.GetSpanId()) + "-01"; !contains(opSaw, want) {
		t.Errorf("the token endpoint saw traceparents %q, want one of the code exchange: %q", opSaw, want)
	}

	// A proxied request continues the client's trace down to the upstream.
	tp1, trace1, client1 := clientTraceparent(1)
	tracedGet(t, b, s.RelayURL, tp1)
	upstreamSaw := s.Tap.Last(t).Traceparent
	spans = rc.waitSpans(t, 10*time.Second, func(sp *tracepb.Span) bool {
		return hexID(sp.GetTraceId()) == trace1 && sp.GetKind() == tracepb.Span_SPAN_KIND_SERVER
	})
	tree := treeOf(spans, trace1)
	server := tree.one(t, "proxied request", client1, "tokenrelay api")
	if got := spanAttr(server, "http.response.status_code").GetIntValue(); got != 200 || spanAttrString(server, "http.route") != "api" {
		t.Errorf("server span: status %d route %q, want 200 api", got, spanAttrString(server, "http.route"))
	}
	tree.one(t, "proxied request", hexID(server.GetSpanId()), "session.load")
	up := tree.one(t, "proxied request", hexID(server.GetSpanId()), "upstream GET")
	if want := "00-" + trace1 + "-" + hexID(up.GetSpanId()) + "-01"; upstreamSaw != want {
		t.Errorf("the upstream saw traceparent %q, want %q (its client span)", upstreamSaw, want)
	}
	waitForLog(t, s.Relay, "trace_id="+trace1)

	// Two requests after the token expired share one refresh: the second
	// is sent once the token endpoint holds the first one's refresh,
	// which the OP answers only after 1.5 s.
	token, old := currentToken(t, s, b)
	waitUntil(t, old.ExpiresAt.Time.Add(100*time.Millisecond), 2*ttl)
	opPost(t, s.OP, "/__token_delay", url.Values{"ms": {"1500"}}, http.StatusNoContent)
	ids, clients := [2]string{}, map[string]string{}
	var wg sync.WaitGroup
	for i := range 2 {
		h, id, client := clientTraceparent(10 + i)
		ids[i], clients[id] = id, client
		seen := len(opTraceparents(t, s.OP))
		wg.Go(func() { tracedGet(t, b, s.RelayURL, h) })
		if i == 0 {
			waitTokenCalls(t, s.OP, seen+1)
		}
	}
	wg.Wait()
	opPost(t, s.OP, "/__token_delay", url.Values{"ms": {"0"}}, http.StatusNoContent)
	// Spans arrive in batches as they end: wait for each request's server
	// span (it ends after its children) and for the flight (which may end
	// after the requests it served, once it let go of the lock).
	for _, id := range ids {
		rc.waitSpans(t, 10*time.Second, func(sp *tracepb.Span) bool {
			return sp.GetKind() == tracepb.Span_SPAN_KIND_SERVER && hexID(sp.GetTraceId()) == id
		})
	}
	spans = rc.waitSpans(t, 10*time.Second, func(sp *tracepb.Span) bool {
		id := hexID(sp.GetTraceId())
		return sp.GetName() == "session.refresh.flight" && (id == ids[0] || id == ids[1])
	})
	var flights, shared int
	var flightID, linkedID string
	for _, id := range ids {
		tree := treeOf(spans, id)
		srv := tree.one(t, "refresh of trace "+id, clients[id], "tokenrelay api")
		refresh := tree.one(t, "refresh of trace "+id, hexID(srv.GetSpanId()), "session.refresh")
		tree.one(t, "refresh of trace "+id, hexID(srv.GetSpanId()), "upstream GET")
		if spanAttr(refresh, "tokenrelay.refresh.shared").GetBoolValue() {
			shared++
			if links := refresh.GetLinks(); len(links) == 1 {
				linkedID = hexID(links[0].GetSpanId())
			} else {
				t.Errorf("the shared refresh span has %d links, want 1 (to the flight)", len(links))
			}
			continue
		}
		flights++
		flight := tree.one(t, "refresh of trace "+id, hexID(refresh.GetSpanId()), "session.refresh.flight")
		flightID = hexID(flight.GetSpanId())
		if got := spanAttrString(flight, "tokenrelay.refresh.result"); got != "success" || !spanAttr(flight, "tokenrelay.refresh.locked").GetBoolValue() || spanAttr(flight, "tokenrelay.refresh.lock_wait_ms") == nil {
			t.Errorf("flight span: result %q locked %v lock wait %v; want success, locked, a lock wait", got, spanAttr(flight, "tokenrelay.refresh.locked"), spanAttr(flight, "tokenrelay.refresh.lock_wait_ms"))
		}
		call := tree.one(t, "refresh of trace "+id, flightID, "provider POST")
		if want := "00-" + id + "-" + hexID(call.GetSpanId()) + "-01"; !contains(opTraceparents(t, s.OP), want) {
			t.Errorf("the token endpoint did not see the refresh call's traceparent %q", want)
		}
	}
	if linkedID != flightID {
		t.Errorf("the shared refresh links to span %s, want the flight %s", linkedID, flightID)
	}
	if flights != 1 || shared != 1 {
		t.Errorf("of two overlapping requests, %d held the refresh flight and %d shared it; want 1 and 1", flights, shared)
	}

	// No attribute anywhere holds a token, a code or the ticket.
	issued := secTokens(t, s.OP, "alice")
	secrets := append(append([]string{token, secTicket(t, res)}, issued.RefreshTokens...), issued.Codes...)
	rc.mu.Lock()
	all, services := append([]*tracepb.Span(nil), rc.spans...), rc.services
	rc.mu.Unlock()
	for _, sp := range all {
		for _, a := range sp.GetAttributes() {
			v := a.GetValue().String()
			for _, sec := range secrets {
				if sec != "" && strings.Contains(v, sec) {
					t.Errorf("span %q attribute %s holds a secret", sp.GetName(), a.GetKey())
				}
			}
			if strings.Contains(v, "Bearer") || strings.Contains(v, "code=") {
				t.Errorf("span %q attribute %s = %s", sp.GetName(), a.GetKey(), v)
			}
		}
	}
	if len(services) == 0 || services[0] != "tokenrelay-e2e" {
		t.Errorf("service.name of the batches = %q, want tokenrelay-e2e (OTEL_SERVICE_NAME)", services)
	}
	t.Logf("%d spans received", len(all))

	// With tracing on, /metrics still lints clean (promlint here, and
	// promtool's own check where it is installed, as in CI).
	sc := metricsGet(t, s)
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(sc.raw)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else if inCI() {
		t.Errorf("promtool is not installed; CI=true requires it")
	}
}

// opTraceparents returns the traceparents the OP's token endpoint received.
func opTraceparents(t *testing.T, o *op) []string {
	t.Helper()
	resp, err := o.client.Get(o.Issuer + "/__traceparents")
	if err != nil {
		t.Fatalf("op traceparents: %v", err)
	}
	defer resp.Body.Close()
	var v []*string
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("op traceparents: %v", err)
	}
	var out []string
	for _, p := range v {
		if p != nil {
			out = append(out, *p)
		}
	}
	return out
}

// waitTokenCalls waits until the OP's token endpoint has received n
// requests, for at most 5 seconds.
func waitTokenCalls(t *testing.T, o *op, n int) {
	t.Helper()
	if !eventually(5*time.Second, 10*time.Millisecond, func() bool { return len(opTraceparents(t, o)) >= n }) {
		t.Fatalf("the token endpoint did not receive request %d within 5s", n)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// waitForLog waits until p's output holds s.
func waitForLog(t *testing.T, p *process, s string) {
	t.Helper()
	p.waitOutput(t, regexp.MustCompile(regexp.QuoteMeta(s)), 5*time.Second)
}
