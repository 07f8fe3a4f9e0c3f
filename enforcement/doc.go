// Package enforcement holds the policy model of a resource, its compilation,
// and [Decide], the pure function that turns what the gateway knows about a
// request (device certificate, posture, login, user risk, request
// attributes) into a [Decision] with a stable [Reason] code.
//
// A [PolicyConfig] is the `policy:` key of a resource. [Compile] checks it,
// applies its defaults and compiles its optional CEL expression once, at
// load time, into an immutable [Policy]. [Decide] then runs per request: it
// does no I/O, reads no clock or globals, fails closed wherever something is
// absent, and does not allocate unless the policy has a CEL expression.
//
// This package must not import net/http, the gateway or the posture feeds;
// everything it needs is gathered before Decide runs.
package enforcement
