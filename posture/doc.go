// Package posture is the normalized model of device health and user risk,
// and the embedded store that keeps it: records live in memory for
// lock-light, allocation-free reads on the request path, and are persisted
// to a bbolt file so that a restart keeps every one of them.
//
// Feeds (package posture/feeds) write to the store through [DB.ApplyPosture]
// and [DB.ApplyRisk]; the gateway reads with [DB.Device] and [DB.Risk]; the
// re-evaluator learns of changes through [DB.Subscribe].
package posture
