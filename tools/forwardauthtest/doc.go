// Package forwardauthtest checks the forward-auth examples that no test can
// run (no Envoy binary, no Traefik binary, no Kubernetes cluster):
// examples/forward-auth/envoy.yaml is decoded into Envoy's own configuration
// types and validated with their protoc-gen-validate rules,
// ingress-nginx.yaml is strictly decoded into Kubernetes Ingress objects,
// and the Traefik examples are read for their ForwardAuth settings; then
// the settings tokenrelay depends on are asserted, and that every example
// names tokenrelay.yaml's addresses. It is a module of its own, so Envoy's
// and Kubernetes' types stay out of tokenrelay's go.mod.
// scripts/test-forward-auth-examples.sh runs it.
package forwardauthtest
