// Package jsontext writes JSON text by hand, as encoding/json writes it with
// SetEscapeHTML(false), for the encoders that append records to a buffer
// rather than reflect over them: export's writers, sqlstore's outbox
// bundles, and the values a sealed profile.MemStore seals.
package jsontext
