package config

import (
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Kubernetes gives every container variables for each Service of its
// namespace, unless the pod sets enableServiceLinks: false (the Helm chart's
// own pods do; an app's pod with the sidecar may not). A Service named
// "tokenrelay" or "tokenrelay-<x>" yields names with tokenrelay's prefix:
//
//	TOKENRELAY[_<X>]_SERVICE_HOST=10.96.0.10
//	TOKENRELAY[_<X>]_SERVICE_PORT=8080
//	TOKENRELAY[_<X>]_SERVICE_PORT_<PORT_NAME>=8080
//	TOKENRELAY[_<X>]_PORT=tcp://10.96.0.10:8080
//	TOKENRELAY[_<X>]_PORT_8080_TCP=tcp://10.96.0.10:8080
//	TOKENRELAY[_<X>]_PORT_8080_TCP_PROTO=tcp
//	TOKENRELAY[_<X>]_PORT_8080_TCP_PORT=8080
//	TOKENRELAY[_<X>]_PORT_8080_TCP_ADDR=10.96.0.10
//
// Those are not configuration: Load ignores a variable whose name has one
// of these shapes and whose value has the matching form (an IP address, a
// port number, a proto://ip:port URL, a protocol name), so a misspelt
// configuration variable is still reported. Variables that name a real key
// are resolved before this check, so no key is ever taken for a link.

var (
	linkServiceHost = regexp.MustCompile(`^(?:[A-Z0-9_]+_)?SERVICE_HOST$`)
	linkServicePort = regexp.MustCompile(`^(?:[A-Z0-9_]+_)?SERVICE_PORT(?:_[A-Z0-9_]+)?$`)
	linkPort        = regexp.MustCompile(`^(?:[A-Z0-9_]+_)?PORT$`)
	linkPortProto   = regexp.MustCompile(`^(?:[A-Z0-9_]+_)?PORT_([0-9]{1,5})_(TCP|UDP|SCTP)(?:_(PROTO|PORT|ADDR))?$`)
)

// isServiceLink reports whether name=value (name without envPrefix) is a
// variable Kubernetes injected for a Service whose name starts with
// "tokenrelay".
func isServiceLink(name, value string) bool {
	// A name may fit two shapes (…_PORT_8080_TCP_PORT also ends in _PORT),
	// so each shape that fits gets its value checked.
	if m := linkPortProto.FindStringSubmatch(name); m != nil && portProtoValue(m[1], strings.ToLower(m[2]), m[3], value) {
		return true
	}
	if linkServiceHost.MatchString(name) && isIP(value) {
		return true
	}
	if linkServicePort.MatchString(name) && isPort(value) {
		return true
	}
	if linkPort.MatchString(name) {
		_, ok := linkURL(value)
		return ok
	}
	return false
}

// portProtoValue checks the value of TOKENRELAY[_<X>]_PORT_<port>_<PROTO>
// and its _PROTO, _PORT and _ADDR forms (part).
func portProtoValue(port, proto, part, value string) bool {
	switch part {
	case "":
		u, ok := linkURL(value)
		return ok && u.Scheme == proto && u.Port() == port
	case "PROTO":
		return value == proto
	case "PORT":
		return value == port
	default: // ADDR
		return isIP(value)
	}
}

// linkURL parses a link address, proto://ip:port.
func linkURL(value string) (*url.URL, bool) {
	u, err := url.Parse(value)
	if err != nil || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, false
	}
	switch u.Scheme {
	case "tcp", "udp", "sctp":
	default:
		return nil, false
	}
	return u, isIP(u.Hostname()) && isPort(u.Port())
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536 && strconv.Itoa(n) == s
}
