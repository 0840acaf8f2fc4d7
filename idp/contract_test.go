package idp_test

import (
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/proxy"
	"github.com/tokenrelay/tokenrelay/session"
)

// The consumers' interfaces, checked where the implementation lives.
var (
	_ proxy.Provider    = (*idp.Provider)(nil)
	_ session.Refresher = (*idp.Provider)(nil)
)
