// Package feeds receives device posture and user risk from outside and
// writes it to the posture store. Each feed is an [http.Handler] the
// gateway mounts at the feed's path.
//
// The one feed type so far is [Webhook]: the portcullis.posture.v1 JSON
// format signed with Standard Webhooks (see the device-feeds protocol
// notes and docs/feeds.md). A feed replies 2xx only after the store has
// made the events durable.
package feeds
