// Package jsontext writes and reads JSON text by hand. It writes as
// encoding/json writes with SetEscapeHTML(false), for the encoders that
// append records to a buffer rather than reflect over them: export's
// writers, sqlstore's outbox bundles, the contexts the Controller checks
// and encodes in one walk, and the values a sealed profile.MemStore seals.
// Its Scanner reads as encoding/json reads into an any, for the decoders
// that read that text back (the outbox's claims).
package jsontext
