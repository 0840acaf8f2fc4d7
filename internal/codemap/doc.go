// Package codemap holds the test that keeps docs/code-map.md true: every
// package of the module has its line there, and imports no package of
// tokenrelay's own that its line does not allow.
package codemap
