// Package export writes and reads access and portability exports (Art. 15 and
// 20 GDPR): one structured package of everything held about one person — the
// profile with its traits, identifiers and metadata, every event, audience
// memberships, suppression, past privacy requests with their receipts, every
// destination that received the data (Art. 19), the person's consent with the
// history of its changes (Art. 7(1)), and the accounts (Segment's groups) they
// are linked to.
//
// Package is the Go value of one export. A Writer writes one as it goes, so a
// caller holding the person's lock streams the stores page by page into it:
// WriteHeader, then identifiers, traits, events, audiences, requests, recipients,
// consent changes and accounts in that order (any may be empty), then Close. Its
// memory does not grow with the number of events. Write writes a whole Package through a Writer.
// Read reads any format back into a Package, checking everything it can, so
// Read(Write(p)) equals p (see Package for the exact terms).
//
// # Formats
//
// JSON is one document, whose JSON Schema (draft 2020-12) JSONSchema returns:
//
//	{"schema": "gdprkit.export/v1", "request_id": ..., "generated_at": ...,
//	 "suppression": {"suppressed": false},
//	 "profile": {"id": ..., "metadata": {...}, "external_ids": [...], "traits": {...}},
//	 "events": [...], "audiences": [...], "requests": [...], "recipients": [...],
//	 "consent_history": [...], "accounts": [...]}
//
// with these members:
//
//	metadata     version, first_message_id, last_message_id, created_at,
//	             updated_at, first_seen, last_seen, consent
//	consent      categories ({category: true, false or "conflict"}),
//	             updated_at; left out when none was collected
//	external_ids type, value, first_message_id, created_at
//	traits       {key: {value, source, updated_at}}
//	events       message_id, name, timestamp, received_at, properties
//	requests     id, type, status, reason, extension_reason, profile_version,
//	             received, due, finished, outcomes
//	outcomes     kind ("backend" or "destination"), name, status, error, finished
//	recipients   name, first_sent, last_sent
//	consent_history
//	             message_id, type, event, source, timestamp, received_at,
//	             preferences ({category: true or false})
//	accounts     group_id, first_linked, last_linked
//
// Times are RFC 3339 with nanoseconds in UTC, left out when zero; an event
// without properties, and a consent change without preferences, leave them out
// (an empty object is written, and differs); strings, numbers and arrays are
// always there. Trait values and properties are JSON values, map keys sorted, as
// are consent categories and preferences.
//
// NDJSON has one JSON object per line, each with a "kind": a "header" (schema,
// request_id, generated_at, profile_id, metadata, suppression) first, then
// "identifier", "trait" (with its "key"), "event", "audience" ("key"),
// "request", "recipient", "consent_change" and "account" records, with the
// members above, and last an "end" record whose "counts" give the number of
// records of each kind, so that a truncated file is detected.
//
// CSV is a zip archive of profile.csv (one row: the header's fields, metadata
// flattened, suppressed, then consent, the categories as a JSON object, and
// consent_updated_at), identifiers.csv, traits.csv, events.csv, audiences.csv,
// requests.csv, outcomes.csv (a request_id column ties each outcome to its
// request), recipients.csv, consent_history.csv and accounts.csv, each with a
// header row of the JSON member names, then manifest.json: schema, generated_at, and for every
// CSV file its name, SHA-256 (hex) and number of data rows. Trait values, event
// properties and consent preferences are JSON-encoded columns; empty cells are
// zero times, absent properties and preferences, and no consent.
//
// # Order
//
// Trait keys and audience keys come in strictly ascending order, and request ids
// and account group ids are unique, all four UTF-8, in every format: the output
// does not depend on map iteration, and keys cannot repeat. Read checks this as
// the Writer does.
// Other strings are written with invalid UTF-8 bytes replaced by U+FFFD, as
// encoding/json does; trait values and properties must be UTF-8, as
// profile.NormalizeValue has them.
//
// # Schema versions
//
// Every export names its SchemaVersion ("gdprkit.export/v1"): in the JSON
// document, in the NDJSON header, in profile.csv and in the CSV manifest. Any
// change to a format changes the version, and Read refuses other versions, so
// unknown members and columns are errors, not silently dropped data. The one
// kind of change made within v1 adds what an older export lacks: events' type,
// source and context; consent (the metadata's consent, the consent_history
// section, profile.csv's consent columns, consent_history.csv); and accounts
// (the accounts section, the end record's account count, accounts.csv). Read
// takes an export from before them as one without them: no such member,
// column, count or file is no data; an archive must still list in its manifest
// every file it has, and have every file its manifest lists.
//
// # Limits
//
// Read holds at most DefaultMaxSize bytes of input (ReadLimit sets another
// bound), and for CSV as much again of uncompressed files; values nest at most
// profile.MaxDepth deep. The Package it returns holds the whole export. A
// Scanner reads an NDJSON export one record at a time instead, in memory a
// small multiple of its longest record whatever the export's size: the way to
// read an export too large to hold. Both refuse an NDJSON record longer than
// DefaultMaxRecord (a Scanner's bound is its own) as soon as it is seen to
// be longer, before decoding it.
//
// # Errors
//
// ErrInvalid (an unknown format; a Writer call out of order or with a value that
// is not a JSON value; malformed, truncated or tampered input to Read, the
// message naming the line, file or element, and for consent and an account's
// group id the field, never its value) and ErrTooLarge (input beyond
// Read's limit; it matches ErrInvalid too), matchable with errors.Is. Errors of
// the underlying io.Writer or io.Reader are returned wrapped and stay matchable;
// a Writer's is sticky.
package export
