package proxy

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tokenrelay/tokenrelay/session"
)

// sessionCookies are the session cookies of one request.
type sessionCookies struct {
	// tickets are the distinct tickets that parse, in the order sent.
	tickets []session.Ticket
	// count is how many cookies of the session cookie's name were sent,
	// parsing or not.
	count int
}

func readSessionCookies(o session.CookieOptions, r *http.Request) sessionCookies {
	t, n := o.Tickets(r)
	return sessionCookies{tickets: t, count: n}
}

// ambiguous reports whether the request carried more than one session
// cookie. Which one is the browser's own is then unknown (a sibling host
// can toss a cookie of the same name when it is not __Host-), so the cookie
// must not be cleared: clearing would hit the browser's real session.
func (c sessionCookies) ambiguous() bool { return c.count > 1 }

// openFirst calls open with each ticket in turn until one opens a session,
// and returns that ticket and open's answer. A ticket whose session is
// missing, tampered or ended (session.ErrNoSession,
// session.ErrSessionExpired) is skipped; any other error (the store is
// down) stops the search. When no ticket opens, the error is the last
// "no session" one, or session.ErrNoSession without tickets; with several
// cookies it is always ErrNoSession, never ErrSessionExpired, whose answer
// clears the cookie.
func openFirst[T any](c sessionCookies, open func(session.Ticket) (T, error)) (session.Ticket, T, error) {
	var zero T
	err := session.ErrNoSession
	for _, t := range c.tickets {
		v, e := open(t)
		if e == nil {
			return t, v, nil
		}
		if !errors.Is(e, session.ErrNoSession) && !errors.Is(e, session.ErrSessionExpired) {
			return session.Ticket{}, zero, e
		}
		err = e
	}
	if c.ambiguous() && errors.Is(err, session.ErrSessionExpired) {
		err = fmt.Errorf("proxy: %d session cookies, none live: %w", c.count, session.ErrNoSession)
	}
	return session.Ticket{}, zero, err
}
