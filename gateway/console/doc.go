// Package console is the admin console: web pages, embedded in the
// binary, for the people who run the gateway. It shows live requests,
// devices and their posture, users and their risk, decisions as they
// happen, feed health and certificate expiry, and lets an operator revoke
// a user, a device or a session, or close a live request.
//
// The console reads the gateway through small interfaces ([Store],
// [Gateway], [Log]) that the gateway implements, so this package never
// imports it. Pages are rendered on the server with html/template and work
// without JavaScript; a small script adds live updates. Every
// state-changing request is a POST that carries a CSRF token bound to the
// operator's session and passes an Origin and Sec-Fetch-Site check, and
// every action is written to the decision log with the operator's
// identity. docs/console.md is the operator's guide.
package console
