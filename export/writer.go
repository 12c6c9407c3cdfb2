package export

import (
	"archive/zip"
	"compress/flate"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gdprkit/privacy/profile"
)

// flushSize is how much the Writer gathers before writing to its io.Writer: large
// enough to make few writes, small enough that memory does not depend on the
// size of the export.
const flushSize = 64 << 10

// A Writer writes one export as it goes, section by section: WriteHeader, then any
// number of identifiers, traits, events, audiences, requests, recipients,
// consent changes and accounts, in that order (any section may be empty), then
// Close. It keeps at most a buffer of
// output, not the export, so memory does not grow with the number of events; the
// one exception is the CSV format's outcomes.csv, held until the requests
// section ends (a person has few requests).
//
// A call out of order, or with a value the format cannot hold, fails with an
// error matching ErrInvalid and writes nothing; the Writer stays usable. An error
// of the underlying io.Writer is returned, wrapped, by that call and by every
// later one: the output is then incomplete and the export must be abandoned.
//
// A Writer is not safe for concurrent use.
type Writer struct {
	dst    io.Writer
	format Format
	order  order
	err    error // sticky: the first error of dst
	closed bool
	buf    []byte // output not yet written to dst (or to the current zip entry)
	rec    recBuf // the record being encoded
	zip    *zipState
}

// zipState is the CSV format's archive: the entry being written, with a running
// SHA-256 and row count for the manifest.
type zipState struct {
	zw          *zip.Writer
	modified    time.Time
	entry       io.Writer
	table       *table
	hash        hash.Hash
	files       []manifestFile
	outcomes    []byte // outcomes.csv's rows, written when the requests end
	outcomeRows int
}

// NewWriter returns a Writer of format f to w. Close does not close w. An unknown
// format fails with an error matching ErrInvalid.
func NewWriter(w io.Writer, f Format) (*Writer, error) {
	if err := checkFormat(f); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, fmt.Errorf("%w: NewWriter: nil io.Writer", ErrInvalid)
	}
	wr := &Writer{dst: w, format: f, buf: make([]byte, 0, flushSize+4<<10)}
	if f == CSV {
		zw := zip.NewWriter(w)
		zw.RegisterCompressor(zip.Deflate, newFlateWriter)
		wr.zip = &zipState{zw: zw, hash: sha256.New()}
	}
	return wr, nil
}

// WriteHeader writes the header: what the export is and about whom. It comes
// first, once. The consent in h.Metadata is written when any was collected
// (Categories not empty or UpdatedAt set); its statuses must be ConsentDenied,
// ConsentGranted or ConsentConflict and its categories UTF-8.
func (w *Writer) WriteHeader(h Header) error {
	if err := w.ready(secHeader, ""); err != nil {
		return err
	}
	if h.Schema == "" {
		h.Schema = SchemaVersion
	}
	if h.Schema != SchemaVersion {
		return fmt.Errorf("%w: header: schema %q: this package writes %q", ErrInvalid, h.Schema, SchemaVersion)
	}
	if len(h.Metadata.Recipients) > 0 {
		return fmt.Errorf("%w: header: Metadata.Recipients must be empty: recipients are a section of their own, written with WriteRecipient", ErrInvalid)
	}
	if h.Metadata.Consent.HistoryLen() > 0 {
		return fmt.Errorf("%w: header: Metadata.Consent.History must be empty: consent changes are a section of their own, written with WriteConsentChange", ErrInvalid)
	}
	if len(h.Metadata.Accounts) > 0 {
		return fmt.Errorf("%w: header: Metadata.Accounts must be empty: accounts are a section of their own, written with WriteAccount", ErrInvalid)
	}
	r := w.rec.reset()
	switch w.format {
	case JSON:
		r.raw(`{"schema":`)
		r.str(h.Schema)
		r.raw(`,"request_id":`)
		r.str(h.RequestID)
		r.time(`,"generated_at":`, h.GeneratedAt)
		r.raw(`,"suppression":{"suppressed":`)
		r.bool(h.Suppression.Suppressed)
		r.raw(`},"profile":{"id":`)
		r.str(string(h.ProfileID))
		r.raw(`,"metadata":`)
		r.metadata(&h.Metadata)
	case NDJSON:
		r.raw(`{"kind":"header","schema":`)
		r.str(h.Schema)
		r.raw(`,"request_id":`)
		r.str(h.RequestID)
		r.time(`,"generated_at":`, h.GeneratedAt)
		r.raw(`,"profile_id":`)
		r.str(string(h.ProfileID))
		r.raw(`,"metadata":`)
		r.metadata(&h.Metadata)
		r.raw(`,"suppression":{"suppressed":`)
		r.bool(h.Suppression.Suppressed)
		r.raw("}}\n")
	case CSV:
		m := &h.Metadata
		r.csv(h.Schema)
		r.csvTime("generated_at", h.GeneratedAt)
		r.csvs(h.RequestID, string(h.ProfileID))
		r.csvTime("created_at", m.CreatedAt)
		r.csvTime("updated_at", m.UpdatedAt)
		r.raw(",")
		r.uint(m.Version)
		r.csvs(m.FirstMessageID, m.LastMessageID)
		r.csvTime("first_seen", m.FirstSeen)
		r.csvTime("last_seen", m.LastSeen)
		r.raw(",")
		r.bool(h.Suppression.Suppressed)
		r.raw(",")
		if m.Consent.Len() > 0 {
			r.csvJSON(func() { r.categories(m.Consent.Categories()) })
		}
		r.csvTime("consent_updated_at", m.Consent.UpdatedAt())
		r.raw("\n")
		w.zip.modified = h.GeneratedAt.UTC()
	}
	if r.err != nil {
		return fmt.Errorf("%w: header: %w", ErrInvalid, r.err)
	}
	return w.put(secHeader, "")
}

// WriteIdentifier writes one identifier linked to the profile.
func (w *Writer) WriteIdentifier(id profile.ExternalID) error {
	if err := w.ready(secIdentifiers, ""); err != nil {
		return err
	}
	r := w.rec.reset()
	if w.format == CSV {
		r.csv(id.ID.Type)
		r.csvs(id.ID.Value)
		r.csvTime("created_at", id.CreatedAt)
		r.csvs(id.FirstMessageID)
		r.raw("\n")
	} else {
		r.open(w.format, secIdentifiers)
		r.raw(`"type":`)
		r.str(id.ID.Type)
		r.raw(`,"value":`)
		r.str(id.ID.Value)
		r.raw(`,"first_message_id":`)
		r.str(id.FirstMessageID)
		r.time(`,"created_at":`, id.CreatedAt)
		r.close(w.format)
	}
	if r.err != nil {
		return fmt.Errorf("%w: identifiers[%d] (%s): %w", ErrInvalid, w.order.n[secIdentifiers], id.ID, r.err)
	}
	return w.put(secIdentifiers, "")
}

// WriteTrait writes one trait. Traits come in strictly ascending key order, so
// keys are unique and the output does not depend on map iteration; a key out of
// order fails with ErrInvalid. The value must be a JSON value as
// profile.NormalizeValue accepts it.
func (w *Writer) WriteTrait(key string, t profile.Trait) error {
	if err := w.ready(secTraits, key); err != nil {
		return err
	}
	r := w.rec.reset()
	switch w.format {
	case JSON:
		r.str(key)
		r.raw(`:{`)
	case NDJSON:
		r.raw(`{"kind":"trait","key":`)
		r.str(key)
		r.raw(",")
	case CSV:
		r.csv(key)
		r.raw(",")
		r.csvValue("value", t.Value)
		r.csvs(t.Source)
		r.csvTime("updated_at", t.UpdatedAt)
		r.raw("\n")
	}
	if w.format != CSV {
		r.raw(`"value":`)
		r.value("value", t.Value)
		r.raw(`,"source":`)
		r.str(t.Source)
		r.time(`,"updated_at":`, t.UpdatedAt)
		r.close(w.format)
	}
	if r.err != nil {
		return fmt.Errorf("%w: traits[%q]: %w", ErrInvalid, key, r.err)
	}
	return w.put(secTraits, key)
}

// WriteEvent writes one event. Events are written in the order given: oldest
// first, by convention. Properties must be JSON values as profile.NormalizeValue
// accepts them; nil properties are left out, and differ from an empty map.
func (w *Writer) WriteEvent(e profile.Event) error {
	if err := w.ready(secEvents, ""); err != nil {
		return err
	}
	r := w.rec.reset()
	if w.format == CSV {
		r.csv(e.MessageID)
		r.csvs(e.Name)
		r.csvTime("timestamp", e.Timestamp)
		r.csvTime("received_at", e.ReceivedAt)
		r.raw(",")
		if e.Properties != nil {
			r.csvValue("properties", e.Properties)
		}
		r.csvs(e.Type, e.Source)
		r.raw(",")
		if e.Context != nil {
			r.csvValue("context", e.Context)
		}
		r.raw("\n")
	} else {
		r.open(w.format, secEvents)
		r.raw(`"message_id":`)
		r.str(e.MessageID)
		r.raw(`,"name":`)
		r.str(e.Name)
		r.time(`,"timestamp":`, e.Timestamp)
		r.time(`,"received_at":`, e.ReceivedAt)
		if e.Properties != nil {
			r.raw(`,"properties":`)
			r.value("properties", e.Properties)
		}
		if e.Type != "" {
			r.raw(`,"type":`)
			r.str(e.Type)
		}
		if e.Source != "" {
			r.raw(`,"source":`)
			r.str(e.Source)
		}
		if e.Context != nil {
			r.raw(`,"context":`)
			r.value("context", e.Context)
		}
		r.close(w.format)
	}
	if r.err != nil {
		return fmt.Errorf("%w: events[%d]: %w", ErrInvalid, w.order.n[secEvents], r.err)
	}
	return w.put(secEvents, "")
}

// WriteAudience writes the key of one audience the person is in. Keys come in
// strictly ascending order, as Package.Audiences holds them.
func (w *Writer) WriteAudience(key string) error {
	if err := w.ready(secAudiences, key); err != nil {
		return err
	}
	r := w.rec.reset()
	switch w.format {
	case JSON:
		r.str(key)
	case NDJSON:
		r.raw(`{"kind":"audience","key":`)
		r.str(key)
		r.raw("}\n")
	case CSV:
		if key == "" {
			r.raw(`""`) // not an empty line, which CSV readers skip
		} else {
			r.csv(key)
		}
		r.raw("\n")
	}
	return w.put(secAudiences, key)
}

// WriteRequest writes one past request with its outcomes. Request ids are
// unique within an export; outcome kinds are OutcomeBackend or
// OutcomeDestination.
func (w *Writer) WriteRequest(q Request) error {
	if err := w.ready(secRequests, q.ID); err != nil {
		return err
	}
	for i := range q.Outcomes {
		if err := checkOutcome(&q.Outcomes[i]); err != nil {
			return fmt.Errorf("%w: request %q: outcomes[%d]: %w", ErrInvalid, q.ID, i, err)
		}
	}
	r := w.rec.reset()
	if w.format == CSV {
		r.csv(q.ID)
		r.csvs(q.Type, q.Status, q.Reason)
		r.csvTime("received", q.Received)
		r.csvTime("due", q.Due)
		r.csvTime("finished", q.Finished)
		r.csvs(q.ExtensionReason)
		r.raw(",")
		r.uint(q.ProfileVersion)
		r.raw("\n")
		// outcomes.csv's rows go after the request's row in the same buffer; put
		// moves them aside.
		r.split, r.splitRows = len(r.b), len(q.Outcomes)
		for i := range q.Outcomes {
			o := &q.Outcomes[i]
			r.csv(q.ID)
			r.csvs(o.Kind, o.Name, o.Status, o.Err)
			r.csvTime("finished", o.Finished)
			r.raw("\n")
		}
	} else {
		r.open(w.format, secRequests)
		r.raw(`"id":`)
		r.str(q.ID)
		r.raw(`,"type":`)
		r.str(q.Type)
		r.raw(`,"status":`)
		r.str(q.Status)
		r.raw(`,"reason":`)
		r.str(q.Reason)
		r.raw(`,"extension_reason":`)
		r.str(q.ExtensionReason)
		r.raw(`,"profile_version":`)
		r.uint(q.ProfileVersion)
		r.time(`,"received":`, q.Received)
		r.time(`,"due":`, q.Due)
		r.time(`,"finished":`, q.Finished)
		r.raw(`,"outcomes":[`)
		for i := range q.Outcomes {
			o := &q.Outcomes[i]
			if i > 0 {
				r.raw(",")
			}
			r.raw(`{"kind":`)
			r.str(o.Kind)
			r.raw(`,"name":`)
			r.str(o.Name)
			r.raw(`,"status":`)
			r.str(o.Status)
			r.raw(`,"error":`)
			r.str(o.Err)
			r.time(`,"finished":`, o.Finished)
			r.raw("}")
		}
		r.raw("]")
		r.close(w.format)
	}
	if r.err != nil {
		return fmt.Errorf("%w: request %q: %w", ErrInvalid, q.ID, r.err)
	}
	return w.put(secRequests, q.ID)
}

// WriteRecipient writes one destination that received the person's data.
func (w *Writer) WriteRecipient(rc Recipient) error {
	if err := w.ready(secRecipients, ""); err != nil {
		return err
	}
	r := w.rec.reset()
	if w.format == CSV {
		r.csv(rc.Name)
		r.csvTime("first_sent", rc.FirstSent)
		r.csvTime("last_sent", rc.LastSent)
		r.raw("\n")
	} else {
		r.open(w.format, secRecipients)
		r.raw(`"name":`)
		r.str(rc.Name)
		r.time(`,"first_sent":`, rc.FirstSent)
		r.time(`,"last_sent":`, rc.LastSent)
		r.close(w.format)
	}
	if r.err != nil {
		return fmt.Errorf("%w: recipient %q: %w", ErrInvalid, rc.Name, r.err)
	}
	return w.put(secRecipients, "")
}

// WriteConsentChange writes one change of the person's consent. Changes are
// written in the order given: oldest first, by convention. Preferences' keys
// must be UTF-8; nil Preferences are left out, and differ from an empty map.
func (w *Writer) WriteConsentChange(ch profile.ConsentChange) error {
	if err := w.ready(secConsent, ""); err != nil {
		return err
	}
	r := w.rec.reset()
	if w.format == CSV {
		r.csv(ch.MessageID)
		r.csvs(ch.Type, ch.Event, ch.Source)
		r.csvTime("timestamp", ch.Timestamp)
		r.csvTime("received_at", ch.ReceivedAt)
		r.raw(",")
		if ch.Preferences != nil {
			r.csvJSON(func() { r.preferences(ch.Preferences) })
		}
		r.raw("\n")
	} else {
		r.open(w.format, secConsent)
		r.raw(`"message_id":`)
		r.str(ch.MessageID)
		r.raw(`,"type":`)
		r.str(ch.Type)
		r.raw(`,"event":`)
		r.str(ch.Event)
		r.raw(`,"source":`)
		r.str(ch.Source)
		r.time(`,"timestamp":`, ch.Timestamp)
		r.time(`,"received_at":`, ch.ReceivedAt)
		if ch.Preferences != nil {
			r.raw(`,"preferences":`)
			r.preferences(ch.Preferences)
		}
		r.close(w.format)
	}
	if r.err != nil {
		return fmt.Errorf("%w: consent_history[%d]: %w", ErrInvalid, w.order.n[secConsent], r.err)
	}
	return w.put(secConsent, "")
}

// WriteAccount writes one account the person is linked to (a Segment group).
// Accounts are written in the order given: first linked first, as the
// profile's metadata holds them. Group ids must be unique within an export
// and UTF-8; a repeated or malformed one fails with ErrInvalid, naming the
// field, not the group id.
func (w *Writer) WriteAccount(l profile.AccountLink) error {
	if err := w.ready(secAccounts, l.GroupID); err != nil {
		return err
	}
	r := w.rec.reset()
	if w.format == CSV {
		r.csv(l.GroupID)
		r.csvTime("first_linked", l.FirstLinked)
		r.csvTime("last_linked", l.LastLinked)
		r.raw("\n")
	} else {
		r.open(w.format, secAccounts)
		r.raw(`"group_id":`)
		r.str(l.GroupID)
		r.time(`,"first_linked":`, l.FirstLinked)
		r.time(`,"last_linked":`, l.LastLinked)
		r.close(w.format)
	}
	if r.err != nil {
		return fmt.Errorf("%w: accounts[%d]: %w", ErrInvalid, w.order.n[secAccounts], r.err)
	}
	return w.put(secAccounts, l.GroupID)
}

// Close ends the remaining sections and the export and writes what is buffered:
// the JSON document's closing brace, the NDJSON trailer, the CSV manifest and
// the zip's directory. It does not close the underlying io.Writer. Close without
// a header fails with ErrInvalid; a second Close returns the first's result.
func (w *Writer) Close() error {
	if w.err != nil || w.closed {
		return w.err
	}
	if w.order.sec == secNone {
		return fmt.Errorf("%w: close: nothing written: the header comes first", ErrInvalid)
	}
	w.advance(secEnd)
	if w.format != CSV {
		w.flush()
	}
	w.closed = true
	return w.err
}

// ready checks, changing nothing, that a record of section s with key may be
// written now.
func (w *Writer) ready(s section, key string) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return fmt.Errorf("%w: write %s: the writer is closed", ErrInvalid, s)
	}
	if err := w.order.check(s, key); err != nil {
		return fmt.Errorf("%w: write %w", ErrInvalid, err)
	}
	return nil
}

// put writes the encoded record w.rec of section s, which ready allowed.
func (w *Writer) put(s section, key string) error {
	w.advance(s)
	if w.err != nil {
		return w.err
	}
	rec := w.rec.b
	if w.format == JSON && w.order.n[s] > 0 {
		w.buf = append(w.buf, ',')
	}
	if w.format == CSV && s == secRequests {
		w.zip.outcomes = append(w.zip.outcomes, rec[w.rec.split:]...)
		w.zip.outcomeRows += w.rec.splitRows
		rec = rec[:w.rec.split]
	}
	w.buf = append(w.buf, rec...)
	w.order.add(s, key)
	if len(w.buf) >= flushSize {
		w.flush()
	}
	return w.err
}

// jsonSections are the JSON document's text that opens and closes each section.
var jsonSections = [...]struct{ open, close string }{
	secIdentifiers: {`,"external_ids":[`, `]`},
	secTraits:      {`,"traits":{`, `}}`}, // closes "profile" too
	secEvents:      {`,"events":[`, `]`},
	secAudiences:   {`,"audiences":[`, `]`},
	secRequests:    {`,"requests":[`, `]`},
	secRecipients:  {`,"recipients":[`, `]`},
	secConsent:     {`,"consent_history":[`, `]`},
	secAccounts:    {`,"accounts":[`, `]`},
	secEnd:         {"}\n", ""},
}

// advance ends sections until s is the current one, writing what ends one and
// begins the next.
func (w *Writer) advance(s section) {
	for w.order.sec < s && w.err == nil {
		w.leave(w.order.sec)
		w.order.sec++
		w.enter(w.order.sec)
	}
}

func (w *Writer) enter(s section) {
	switch w.format {
	case JSON:
		w.buf = append(w.buf, jsonSections[s].open...)
	case NDJSON:
		if s == secEnd {
			w.buf = append(w.buf, `{"kind":"end","counts":{`...)
			for c := secIdentifiers; c < secEnd; c++ {
				if c > secIdentifiers {
					w.buf = append(w.buf, ',')
				}
				w.buf = append(w.buf, '"')
				w.buf = append(w.buf, sectionNames[c]...)
				w.buf = append(w.buf, '"', ':')
				w.buf = strconv.AppendInt(w.buf, int64(w.order.n[c]), 10)
			}
			w.buf = append(w.buf, "}}\n"...)
		}
	case CSV:
		if s == secEnd {
			w.writeManifest()
		} else {
			w.openEntry(sectionTables[s])
		}
	}
}

func (w *Writer) leave(s section) {
	switch w.format {
	case JSON:
		w.buf = append(w.buf, jsonSections[s].close...)
	case CSV:
		if s == secNone {
			return
		}
		w.closeEntry(w.order.n[s])
		if s == secRequests {
			z := w.zip
			w.openEntry(outcomesTable)
			w.buf = append(w.buf, z.outcomes...)
			w.closeEntry(z.outcomeRows)
			z.outcomes = nil
		}
	}
}

// flush writes the buffer to the underlying io.Writer, or for CSV to the current
// zip entry and its hash.
func (w *Writer) flush() {
	if len(w.buf) == 0 || w.err != nil {
		return
	}
	var err error
	if w.format == CSV {
		w.zip.hash.Write(w.buf)
		_, err = w.zip.entry.Write(w.buf)
	} else {
		var n int
		n, err = w.dst.Write(w.buf)
		if err == nil && n < len(w.buf) {
			err = io.ErrShortWrite
		}
	}
	w.buf = w.buf[:0]
	if cap(w.buf) > 4*flushSize { // one huge record: do not keep its memory
		w.buf = make([]byte, 0, flushSize+4<<10)
	}
	if err != nil {
		w.fail(err)
	}
}

func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = fmt.Errorf("export: writing %s: %w", w.format, err)
	}
}

func (w *Writer) openEntry(t *table) {
	z := w.zip
	fw, err := z.zw.CreateHeader(&zip.FileHeader{Name: t.name, Method: zip.Deflate, Modified: z.modified})
	if err != nil {
		w.fail(err)
		return
	}
	z.entry, z.table = fw, t
	z.hash.Reset()
	w.buf = append(w.buf, t.header...)
}

func (w *Writer) closeEntry(rows int) {
	w.flush()
	if w.err != nil {
		return
	}
	z := w.zip
	z.files = append(z.files, manifestFile{Name: z.table.name, SHA256: hex.EncodeToString(z.hash.Sum(nil)), Rows: rows})
	z.entry, z.table = nil, nil
}

// writeManifest writes manifest.json and the zip's directory.
func (w *Writer) writeManifest() {
	z := w.zip
	b := append([]byte(nil), `{"schema":`...)
	b = appendStr(b, SchemaVersion)
	if !z.modified.IsZero() {
		b = append(b, `,"generated_at":"`...)
		b, _ = appendTime(b, "generated_at", z.modified) // checked in WriteHeader
		b = append(b, '"')
	}
	b = append(b, `,"files":[`...)
	for i, f := range z.files {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendStr(b, f.Name)
		b = append(b, `,"sha256":`...)
		b = appendStr(b, f.SHA256)
		b = append(b, `,"rows":`...)
		b = strconv.AppendInt(b, int64(f.Rows), 10)
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	fw, err := z.zw.CreateHeader(&zip.FileHeader{Name: manifestName, Method: zip.Deflate, Modified: z.modified})
	if err == nil {
		_, err = fw.Write(b)
	}
	if err == nil {
		err = z.zw.Close()
	}
	if err != nil {
		w.fail(err)
	}
}

// Write writes p in format f to w through a Writer: traits in key order, every
// other collection in the order p holds it. Round trip: see Package.
func Write(w io.Writer, f Format, p *Package) error {
	if p == nil {
		return fmt.Errorf("%w: Write: nil package", ErrInvalid)
	}
	wr, err := NewWriter(w, f)
	if err != nil {
		return err
	}
	err = wr.WriteHeader(Header{
		Schema:      p.Schema,
		GeneratedAt: p.GeneratedAt,
		RequestID:   p.RequestID,
		ProfileID:   p.Profile.ID,
		Metadata:    p.Profile.Metadata,
		Suppression: p.Suppression,
	})
	for i := 0; err == nil && i < len(p.Profile.ExternalIDs); i++ {
		err = wr.WriteIdentifier(p.Profile.ExternalIDs[i])
	}
	if err == nil && len(p.Profile.Traits) > 0 {
		keys := make([]string, 0, len(p.Profile.Traits))
		for k := range p.Profile.Traits {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i := 0; err == nil && i < len(keys); i++ {
			err = wr.WriteTrait(keys[i], p.Profile.Traits[keys[i]])
		}
	}
	for i := 0; err == nil && i < len(p.Events); i++ {
		err = wr.WriteEvent(p.Events[i])
	}
	for i := 0; err == nil && i < len(p.Audiences); i++ {
		err = wr.WriteAudience(p.Audiences[i])
	}
	for i := 0; err == nil && i < len(p.Requests); i++ {
		err = wr.WriteRequest(p.Requests[i])
	}
	for i := 0; err == nil && i < len(p.Recipients); i++ {
		err = wr.WriteRecipient(p.Recipients[i])
	}
	for i := 0; err == nil && i < len(p.ConsentHistory); i++ {
		err = wr.WriteConsentChange(p.ConsentHistory[i])
	}
	for i := 0; err == nil && i < len(p.Accounts); i++ {
		err = wr.WriteAccount(p.Accounts[i])
	}
	if err != nil {
		return err
	}
	return wr.Close()
}

// recBuf is one record being encoded; the first error sticks, so encoders read
// straight through and check once.
type recBuf struct {
	b   []byte
	val []byte // JSON text of a value for a CSV column
	// keys holds a map's keys while they are sorted, for consent categories
	// and preferences.
	keys []string
	enc  valueEncoder
	err  error
	// split, for a CSV request, is where its outcomes' rows begin in b, and
	// splitRows how many there are.
	split, splitRows int
}

func (r *recBuf) reset() *recBuf {
	r.b, r.err, r.split, r.splitRows = r.b[:0], nil, 0, 0
	return r
}

func (r *recBuf) raw(s string) { r.b = append(r.b, s...) }
func (r *recBuf) str(s string) { r.b = appendStr(r.b, s) }
func (r *recBuf) uint(u uint64) {
	r.b = strconv.AppendUint(r.b, u, 10)
}
func (r *recBuf) bool(v bool) { r.b = strconv.AppendBool(r.b, v) }

// open begins a JSON object of section s: with its kind in NDJSON.
func (r *recBuf) open(f Format, s section) {
	if f == NDJSON {
		r.raw(`{"kind":"`)
		r.raw(sectionNames[s])
		r.raw(`",`)
	} else {
		r.raw("{")
	}
}

func (r *recBuf) close(f Format) {
	if f == NDJSON {
		r.raw("}\n")
	} else {
		r.raw("}")
	}
}

// time appends a JSON member, prefix then t quoted, unless t is zero.
func (r *recBuf) time(prefix string, t time.Time) {
	if t.IsZero() || r.err != nil {
		return
	}
	r.raw(prefix)
	r.b = append(r.b, '"')
	r.b, r.err = appendTime(r.b, fieldName(prefix), t)
	r.b = append(r.b, '"')
}

// fieldName returns the name in a member prefix such as `,"due":`.
func fieldName(prefix string) string {
	if len(prefix) >= 4 {
		return prefix[2 : len(prefix)-2]
	}
	return prefix
}

func (r *recBuf) metadata(m *profile.Metadata) {
	r.raw(`{"version":`)
	r.uint(m.Version)
	r.raw(`,"first_message_id":`)
	r.str(m.FirstMessageID)
	r.raw(`,"last_message_id":`)
	r.str(m.LastMessageID)
	r.time(`,"created_at":`, m.CreatedAt)
	r.time(`,"updated_at":`, m.UpdatedAt)
	r.time(`,"first_seen":`, m.FirstSeen)
	r.time(`,"last_seen":`, m.LastSeen)
	if c := &m.Consent; c.Len() > 0 || !c.UpdatedAt().IsZero() {
		r.raw(`,"consent":{"categories":`)
		r.categories(c.Categories())
		if !c.UpdatedAt().IsZero() && r.err == nil {
			r.raw(`,"updated_at":"`)
			r.b, r.err = appendTime(r.b, "consent.updated_at", c.UpdatedAt())
			r.raw(`"`)
		}
		r.raw("}")
	}
	r.raw("}")
}

// categories appends consent categories as a JSON object, keys ascending,
// each status true, false or "conflict".
func (r *recBuf) categories(m map[string]profile.ConsentStatus) {
	r.b = append(r.b, '{')
	for i, k := range sortedKeys(r, m, "consent.categories") {
		if i > 0 {
			r.b = append(r.b, ',')
		}
		r.str(k)
		switch s := m[k]; s {
		case profile.ConsentDenied:
			r.raw(":false")
		case profile.ConsentGranted:
			r.raw(":true")
		case profile.ConsentConflict:
			r.raw(`:"conflict"`)
		default:
			if r.err == nil {
				r.err = fmt.Errorf("consent.categories[%q]: status %v is not ConsentDenied, ConsentGranted or ConsentConflict", k, s)
			}
		}
	}
	r.b = append(r.b, '}')
}

// preferences appends a consent change's preferences as a JSON object, keys
// ascending.
func (r *recBuf) preferences(m map[string]bool) {
	r.b = append(r.b, '{')
	for i, k := range sortedKeys(r, m, "preferences") {
		if i > 0 {
			r.b = append(r.b, ',')
		}
		r.str(k)
		r.b = append(r.b, ':')
		r.bool(m[k])
	}
	r.b = append(r.b, '}')
}

// sortedKeys returns m's keys in ascending order, in r.keys. A key that is
// not UTF-8 sets r.err, naming field: it would be written changed, and could
// then collide with another.
func sortedKeys[V any](r *recBuf, m map[string]V, field string) []string {
	r.keys = r.keys[:0]
	for k := range m {
		if !utf8.ValidString(k) && r.err == nil {
			r.err = fmt.Errorf("%s: key %q is not valid UTF-8", field, k)
		}
		r.keys = append(r.keys, k)
	}
	slices.Sort(r.keys)
	return r.keys
}

func (r *recBuf) value(path string, v any) {
	if r.err != nil {
		return
	}
	r.b, r.err = r.enc.encodeValue(r.b, path, v)
}

// csv appends one CSV field.
func (r *recBuf) csv(s string) { r.b = appendCSV(r.b, s) }

// csvs appends CSV fields, each after a comma.
func (r *recBuf) csvs(fields ...string) {
	for _, s := range fields {
		r.b = append(r.b, ',')
		r.b = appendCSV(r.b, s)
	}
}

// csvTime appends a comma then t, the column name, empty when zero.
func (r *recBuf) csvTime(name string, t time.Time) {
	r.b = append(r.b, ',')
	if t.IsZero() || r.err != nil {
		return
	}
	r.b, r.err = appendTime(r.b, name, t)
}

// csvJSON appends, as one CSV field, the JSON text enc appends to r.b.
func (r *recBuf) csvJSON(enc func()) {
	mark := len(r.b)
	enc()
	r.val = append(r.val[:0], r.b[mark:]...)
	r.b = appendCSVJSON(r.b[:mark], r.val)
}

// csvValue appends v as a JSON-encoded CSV field.
func (r *recBuf) csvValue(path string, v any) {
	if r.err != nil {
		return
	}
	r.val, r.err = r.enc.encodeValue(r.val[:0], path, v)
	r.b = appendCSVJSON(r.b, r.val)
}

// The zip's deflate writers are pooled: a flate.Writer costs hundreds of
// kilobytes, and an archive has eleven entries.
var flatePool sync.Pool

// flateLevel trades size for speed: exports are written under the subject's lock.
const flateLevel = flate.BestSpeed

type pooledFlate struct{ fw *flate.Writer }

func newFlateWriter(w io.Writer) (io.WriteCloser, error) {
	fw, ok := flatePool.Get().(*flate.Writer)
	if ok {
		fw.Reset(w)
	} else {
		var err error
		if fw, err = flate.NewWriter(w, flateLevel); err != nil {
			return nil, err
		}
	}
	return &pooledFlate{fw}, nil
}

func (p *pooledFlate) Write(b []byte) (int, error) { return p.fw.Write(b) }

func (p *pooledFlate) Close() error {
	err := p.fw.Close()
	flatePool.Put(p.fw)
	p.fw = nil
	return err
}
