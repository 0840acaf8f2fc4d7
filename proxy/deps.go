package proxy

// Sessions is the session manager as the Handler's parts use it; each part
// keeps only the small interface it calls, declared next to it:
//
//   - the request path and the retry transport: tokenSource and
//     clientTokenSource (token.go);
//   - the request path of a route with a policy or identity, or that
//     needs a session but sends no user token: sessionOpener (handler.go);
//   - the callback and token capture: sessionStarter (capture.go);
//   - login and callback: loginStates (login.go), loginClaims (callback.go);
//   - GET {prefix}/session: sessionLoader (sessioninfo.go);
//   - logout: sessionEnder (logout.go);
//   - back-channel logout: logoutIndex (backchannel.go).
//
// *session.Manager implements it.
type Sessions interface {
	tokenSource
	clientTokenSource
	sessionOpener
	sessionStarter
	loginStates
	loginClaims
	sessionLoader
	sessionEnder
	logoutIndex
}

// Provider is the identity provider as the Handler's parts use it; each
// part keeps only the small interface it calls, declared next to it:
//
//   - login: authorizer (login.go);
//   - callback: codeExchanger (callback.go);
//   - logout: logoutProvider (logout.go);
//   - back-channel logout: logoutTokenVerifier (backchannel.go);
//   - token capture: capturer (capture.go).
//
// *idp.Provider implements it.
type Provider interface {
	authorizer
	codeExchanger
	logoutProvider
	logoutTokenVerifier
	capturer
}
