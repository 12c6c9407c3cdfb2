// Package segmentapi serves Segment's HTTP APIs over a privacy.Controller, as
// http.Handlers a host mounts on its own server, so that Segment's libraries
// (analytics-go, analytics-python, ...), Profile API callers and regulation
// callers can be pointed at the host and work unchanged:
//
//   - NewTracking: the Tracking API (/v1/identify, /v1/track, /v1/page,
//     /v1/screen, /v1/group, /v1/alias, /v1/batch, /v1/import), into
//     Collect and CollectBatch;
//   - NewProfiles: the Profile API (/v1/spaces/{space_id}/collections/
//     {users|accounts}/profiles/{external_id}/{traits|events|external_ids|
//     links|metadata}), over the Controller's reads;
//   - NewRegulations: the deletion and suppression endpoints of Segment's
//     Public API (/regulations, /suppressions), over Apply, Status,
//     Requests, Export and Extend, with RECTIFY and ACCESS beside Segment's
//     types.
//
// A host mounts them side by side:
//
//	mux := http.NewServeMux()
//	mux.Handle("/v1/", segmentapi.NewTracking(c, segmentapi.WithWriteKey(writeKey, "src_web")))
//	mux.Handle("/v1/spaces/", segmentapi.NewProfiles(c, segmentapi.WithAccessToken(token)))
//	regs := segmentapi.NewRegulations(c, segmentapi.WithAccessToken(token))
//	mux.Handle("/regulations", regs)
//	mux.Handle("/regulations/", regs)
//	mux.Handle("/suppressions", regs)
//
// Every endpoint authenticates as Segment's does (a write key as the HTTP
// Basic user name, an access token as the Basic user name or as a Bearer
// token), and none is open without one. Bad JSON, wrong types and over-size
// bodies get Segment's error shape and change nothing. Error bodies name
// fields, never values, and handlers log a server-side failure by its class
// only: a backend's error text may quote the value it refused. Every handler
// passes the request's context to the Controller, but for the batches: the
// messages of batch requests that arrive while others are being collected
// are collected together, in one CollectBatch (up to privacy.BatchSize
// messages), under a context that ends once every request in it has ended,
// each request answered with its own messages' outcomes (group.go). A
// request alone is collected at once, one whose client leaves is answered
// at once, and none waits more than a quarter of a second behind calls
// that are stuck (on another host's locks, say) before it starts its own.
//
// # Files
//
//   - tracking.go: the Tracking API; wire.go: Segment's message JSON, read
//     into the Controller's messages (numbers kept exactly, ISO 8601 times,
//     a batch's shared context); body.go: gzip and the size limits;
//     group.go: concurrent batches collected together.
//   - profiles.go: the Profile API.
//   - regulations.go: the regulations and suppressions endpoints.
//   - options.go: the options (write keys, access tokens, logger, clock,
//     space); respond.go: answers and the error classes logged.
//
// examples/segment runs all three over SQLite; compat/ drives them with
// Segment's own analytics-go client.
package segmentapi
