package e2e

import (
	"net"
	"sync"
	"testing"
)

// tcpRelay forwards TCP connections from a loopback port to a target, as a
// load balancer in front of a provider would, and can hold the bytes of
// either direction: held bytes (and the end of the stream) wait in the relay
// and the kernel's socket buffers, and flow again, in order, on release.
// Holding the answers (down) is a provider that hangs: it receives each
// call and completes it (rotating the refresh token) at once, and its
// answer arrives when the hang ends, or never, to a client that has given
// up. Safe for concurrent use.
type tcpRelay struct {
	Addr   string
	target string
	ln     net.Listener
	// up carries client→target bytes, down target→client.
	up, down *gate

	mu    sync.Mutex
	conns map[net.Conn]struct{} // guarded by mu
	wg    sync.WaitGroup
}

// startTCPRelay listens on a free loopback port and forwards to target
// (host:port) until the test ends.
func startTCPRelay(t *testing.T, target string) *tcpRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	r := &tcpRelay{Addr: ln.Addr().String(), target: target, ln: ln, up: newGate(), down: newGate(), conns: map[net.Conn]struct{}{}}
	r.wg.Go(r.accept)
	t.Cleanup(r.close)
	return r
}

// release lets everything flow again.
func (r *tcpRelay) release() { r.up.release(); r.down.release() }

func (r *tcpRelay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Go(func() { r.serve(c) })
	}
}

// serve forwards one connection until both directions have ended.
func (r *tcpRelay) serve(client net.Conn) {
	server, err := net.Dial("tcp", r.target)
	if err != nil {
		client.Close()
		return
	}
	if !r.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	var pipes sync.WaitGroup
	pipes.Go(func() { pipe(server, client, r.up) })
	pipes.Go(func() { pipe(client, server, r.down) })
	pipes.Wait()
	client.Close()
	server.Close()
	r.untrack(client, server)
}

// pipe copies src to dst, each chunk waiting at g, and half-closes dst at
// the end of src.
func pipe(dst, src net.Conn, g *gate) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			g.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	g.wait()
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func (r *tcpRelay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *tcpRelay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
	}
}

// close stops accepting, releases the gates and closes every connection.
func (r *tcpRelay) close() {
	r.ln.Close()
	r.release()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
}

// gate is open or held; wait blocks while it is held.
type gate struct {
	mu   sync.Mutex
	held bool
	open chan struct{} // closed while the gate is open; guarded by mu
}

func newGate() *gate {
	g := &gate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.held {
		g.held = true
		g.open = make(chan struct{})
	}
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held {
		g.held = false
		close(g.open)
	}
}

func (g *gate) wait() {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	<-open
}
