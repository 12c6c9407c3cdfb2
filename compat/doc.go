// Package compat tests the library against Segment's own clients: its
// tests send with the real analytics-go v3 client to an httptest server
// that decodes the client's batches into the library's message types and
// collects them, then read everything back through the Profile API reads.
// It is a module of its own, so that the client is never among what the
// library's importers download.
//
// The decoding here is a test's thin translation layer; the HTTP tracking
// API a host mounts is package segmentapi's (issue 17).
package compat
