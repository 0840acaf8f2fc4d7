// Package policy decides who may use a route: allow-lists of emails, email
// domains, groups, subjects and claim values, one CEL expression over the
// user's claims and the request, and step-up requirements (acr, amr, a
// recent authentication).
//
// A Policy is compiled once, at start, from the default Options and a
// route's RouteOptions; Evaluate then answers Allow, Deny or StepUp for each
// request without compiling anything. Options.Validate reports every
// problem (a bad CEL expression with CEL's own error) with its key path, so
// check-config can show them all at once.
//
// How the pieces combine:
//
//   - within one allow-list, any entry matches (emails: [a, b] lets a or b
//     in);
//   - across allow-lists, every configured list must match (email_domains
//     and groups: the domain and a group);
//   - the expression, when set, must be true;
//   - a route's policy extends the default one (both must pass) unless its
//     mode is replace;
//   - step-up is checked last, so a user the policy refuses anyway gets 403
//     at once rather than a second login first. A route's step_up fields
//     override the default's field by field.
//
// A Policy with nothing configured allows every logged-in user.
package policy
