package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// DefaultMaxSize is the largest export Read accepts, in bytes: for JSON and
// NDJSON the input; for CSV the zip archive, which Read holds in memory (zip
// needs random access), and apart from it the total of its files uncompressed.
// The Package read takes a small multiple of this in memory. ReadLimit sets
// another bound.
const DefaultMaxSize = 256 << 20

// Read reads an export of format f, checking it as it goes: the schema version,
// record kinds, section order, key order, the NDJSON trailer's counts, the CSV
// manifest's SHA-256 and row counts, the CSV columns and every value. Anything
// wrong fails with an error matching ErrInvalid that says what and where (line,
// file, element); an input larger than DefaultMaxSize fails with ErrTooLarge.
// An error of r itself is returned wrapped, not as ErrInvalid.
func Read(r io.Reader, f Format) (*Package, error) { return ReadLimit(r, f, DefaultMaxSize) }

// ReadLimit is Read with maxSize in place of DefaultMaxSize; maxSize <= 0 means
// DefaultMaxSize.
func ReadLimit(r io.Reader, f Format, maxSize int64) (*Package, error) {
	if err := checkFormat(f); err != nil {
		return nil, err
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	lr := &limitReader{r: r, left: maxSize}
	var p *Package
	var err error
	switch f {
	case JSON:
		p, err = readJSON(lr)
	case NDJSON:
		p, err = readNDJSON(lr)
	case CSV:
		p, err = readCSV(lr, maxSize)
	}
	if err == nil {
		return p, nil
	}
	var se *sourceError
	switch {
	case errors.As(err, &se):
		return nil, fmt.Errorf("export: reading %s: %w", f, se.err)
	case errors.Is(err, errTooLarge):
		return nil, fmt.Errorf("%w: %w: the %s export is larger than %d bytes", ErrInvalid, ErrTooLarge, f, maxSize)
	case !errors.Is(err, ErrInvalid):
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, f, err)
	}
	return nil, err
}

// errTooLarge is what limitReader returns; ReadLimit turns it into a message
// with the limit.
var errTooLarge = errors.New("input too large")

// sourceError is an error of the reader given to Read, told apart from a
// malformed export.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// limitReader reads at most left bytes and fails with errTooLarge when there are
// more.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.left+1 { // one byte more tells a full input from a long one
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, errTooLarge
	}
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

// jsonTime is a time in JSON: an RFC 3339 string, or null for the zero time.
type jsonTime time.Time

// UnmarshalJSON reads an RFC 3339 string as UTC.
func (t *jsonTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = jsonTime{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a time must be an RFC 3339 string, not %.40s", b)
	}
	v, err := parseTime(s)
	*t = jsonTime(v)
	return err
}

// The wire types are the JSON records, as Read decodes them. Their names are
// documented in doc.go and in schema.json.
type (
	wireMetadata struct {
		Version        uint64   `json:"version"`
		FirstMessageID string   `json:"first_message_id"`
		LastMessageID  string   `json:"last_message_id"`
		CreatedAt      jsonTime `json:"created_at"`
		UpdatedAt      jsonTime `json:"updated_at"`
		FirstSeen      jsonTime `json:"first_seen"`
		LastSeen       jsonTime `json:"last_seen"`
		// Consent is absent when none was collected, and in an export
		// from before consent was kept.
		Consent *wireConsent `json:"consent"`
	}
	// wireConsent is the consent state in the metadata. Its times are
	// decoded apart, so that an error names the field.
	wireConsent struct {
		Categories wireCategories  `json:"categories"`
		UpdatedAt  json.RawMessage `json:"updated_at"`
	}
	wireConsentChange struct {
		MessageID   string          `json:"message_id"`
		Type        string          `json:"type"`
		Event       string          `json:"event"`
		Source      string          `json:"source"`
		Timestamp   json.RawMessage `json:"timestamp"`
		ReceivedAt  json.RawMessage `json:"received_at"`
		Preferences wirePreferences `json:"preferences"`
	}
	// wireAccount is an account link. Its times are decoded apart, so that
	// an error names the field.
	wireAccount struct {
		GroupID     string          `json:"group_id"`
		FirstLinked json.RawMessage `json:"first_linked"`
		LastLinked  json.RawMessage `json:"last_linked"`
	}
	wireSuppression struct {
		Suppressed bool `json:"suppressed"`
	}
	wireIdentifier struct {
		Type           string   `json:"type"`
		Value          string   `json:"value"`
		FirstMessageID string   `json:"first_message_id"`
		CreatedAt      jsonTime `json:"created_at"`
	}
	wireTrait struct {
		Value     any      `json:"value"`
		Source    string   `json:"source"`
		UpdatedAt jsonTime `json:"updated_at"`
	}
	wireEvent struct {
		MessageID  string         `json:"message_id"`
		Name       string         `json:"name"`
		Timestamp  jsonTime       `json:"timestamp"`
		ReceivedAt jsonTime       `json:"received_at"`
		Properties map[string]any `json:"properties"`
		Type       string         `json:"type"`
		Source     string         `json:"source"`
		Context    map[string]any `json:"context"`
	}
	wireRequest struct {
		ID              string        `json:"id"`
		Type            string        `json:"type"`
		Status          string        `json:"status"`
		Reason          string        `json:"reason"`
		ExtensionReason string        `json:"extension_reason"`
		ProfileVersion  uint64        `json:"profile_version"`
		Received        jsonTime      `json:"received"`
		Due             jsonTime      `json:"due"`
		Finished        jsonTime      `json:"finished"`
		Outcomes        []wireOutcome `json:"outcomes"`
	}
	wireOutcome struct {
		Kind     string   `json:"kind"`
		Name     string   `json:"name"`
		Status   string   `json:"status"`
		Err      string   `json:"error"`
		Finished jsonTime `json:"finished"`
	}
	wireRecipient struct {
		Name      string   `json:"name"`
		FirstSent jsonTime `json:"first_sent"`
		LastSent  jsonTime `json:"last_sent"`
	}
)

func (m *wireMetadata) metadata() (profile.Metadata, error) {
	md := profile.Metadata{
		CreatedAt:      time.Time(m.CreatedAt),
		UpdatedAt:      time.Time(m.UpdatedAt),
		Version:        m.Version,
		FirstMessageID: m.FirstMessageID,
		LastMessageID:  m.LastMessageID,
		FirstSeen:      time.Time(m.FirstSeen),
		LastSeen:       time.Time(m.LastSeen),
	}
	if c := m.Consent; c != nil {
		at, err := rawTime("consent.updated_at", c.UpdatedAt)
		if err != nil {
			return profile.Metadata{}, err
		}
		md.Consent = profile.NewConsent(c.Categories, at, nil)
	}
	return md, nil
}

func (w *wireConsentChange) consentChange() (profile.ConsentChange, error) {
	ts, err := rawTime("timestamp", w.Timestamp)
	if err != nil {
		return profile.ConsentChange{}, err
	}
	recv, err := rawTime("received_at", w.ReceivedAt)
	if err != nil {
		return profile.ConsentChange{}, err
	}
	return profile.ConsentChange{MessageID: w.MessageID, Type: w.Type, Event: w.Event, Source: w.Source,
		Timestamp: ts, ReceivedAt: recv, Preferences: w.Preferences}, nil
}

func (w *wireAccount) account() (profile.AccountLink, error) {
	first, err := rawTime("first_linked", w.FirstLinked)
	if err != nil {
		return profile.AccountLink{}, err
	}
	last, err := rawTime("last_linked", w.LastLinked)
	if err != nil {
		return profile.AccountLink{}, err
	}
	return profile.AccountLink{GroupID: w.GroupID, FirstLinked: first, LastLinked: last}, nil
}

// rawTime reads a time in JSON as jsonTime does, with an error that names
// field and says nothing of the value.
func rawTime(field string, raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, fmt.Errorf("%s: a time must be an RFC 3339 string", field)
	}
	t, err := parseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", field, err)
	}
	return t, nil
}

// wireCategories is consent categories in JSON: an object of statuses true,
// false or "conflict". Empty, or null, it is nil.
type wireCategories map[string]profile.ConsentStatus

// UnmarshalJSON reads the categories, refusing a repeated category or
// another status, naming the category but not what its status was.
func (c *wireCategories) UnmarshalJSON(b []byte) error {
	m, err := decodeCategories("consent.categories", b)
	*c = m
	return err
}

// decodeCategories reads consent categories, the field what, from JSON text.
func decodeCategories(what string, b []byte) (map[string]profile.ConsentStatus, error) {
	var m map[string]profile.ConsentStatus
	_, err := decodeObject(what, b, func(key string, v json.Token) error {
		if _, dup := m[key]; dup {
			return errors.New("appears twice")
		}
		var s profile.ConsentStatus
		switch v {
		case true:
			s = profile.ConsentGranted
		case false:
			s = profile.ConsentDenied
		case "conflict":
			s = profile.ConsentConflict
		default:
			return errors.New(`the status is not true, false or "conflict"`)
		}
		if m == nil {
			m = make(map[string]profile.ConsentStatus)
		}
		m[key] = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// wirePreferences is a consent change's preferences in JSON: an object of
// booleans. Null is nil, as is a change without them; an empty object is an
// empty map, which differs (it denies every category).
type wirePreferences map[string]bool

// UnmarshalJSON reads the preferences, refusing a repeated key or a value
// that is not a boolean, naming the key but not the value.
func (p *wirePreferences) UnmarshalJSON(b []byte) error {
	m, err := decodePreferences("preferences", b)
	*p = m
	return err
}

// decodePreferences reads consent preferences, the field what, from JSON
// text.
func decodePreferences(what string, b []byte) (map[string]bool, error) {
	m := map[string]bool{}
	null, err := decodeObject(what, b, func(key string, v json.Token) error {
		if _, dup := m[key]; dup {
			return errors.New("appears twice")
		}
		granted, ok := v.(bool)
		if !ok {
			return errors.New("not a boolean")
		}
		m[key] = granted
		return nil
	})
	if err != nil || null {
		return nil, err
	}
	return m, nil
}

// decodeObject reads b, JSON text of an object whose members are scalars, or
// null (which it reports), passing each member's key and value to add. An
// error names what and the key, never the value: a member that is not a
// scalar is passed as the delimiter that opens it, for add to refuse.
func decodeObject(what string, b []byte, add func(key string, v json.Token) error) (null bool, err error) {
	if !json.Valid(b) {
		return false, fmt.Errorf("%s: not JSON", what)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	switch {
	case err != nil:
		return false, fmt.Errorf("%s: %w", what, err)
	case tok == nil:
		return true, nil
	case tok != json.Delim('{'):
		return false, fmt.Errorf("%s: not a JSON object", what)
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return false, fmt.Errorf("%s: %w", what, err)
		}
		key := kt.(string) // inside an object, Token returns keys as strings
		v, err := dec.Token()
		if err != nil {
			return false, fmt.Errorf("%s[%.80q]: %w", what, key, err)
		}
		if err := add(key, v); err != nil {
			return false, fmt.Errorf("%s[%.80q]: %w", what, key, err)
		}
	}
	return false, nil
}

func (w *wireIdentifier) identifier() profile.ExternalID {
	return profile.ExternalID{
		ID:             identity.ID{Type: w.Type, Value: w.Value},
		CreatedAt:      time.Time(w.CreatedAt),
		FirstMessageID: w.FirstMessageID,
	}
}

// The values of traits and events are decoded with their numbers as
// json.Number: NormalizeValue bounds their depth and keeps each number
// exactly (a float64 when one holds it).
func (w *wireTrait) trait() (profile.Trait, error) {
	v, err := profile.NormalizeValue("value", w.Value)
	if err != nil {
		return profile.Trait{}, err
	}
	return profile.Trait{Value: v, Source: w.Source, UpdatedAt: time.Time(w.UpdatedAt)}, nil
}

// exactObject is an object's canonical form (nil stays nil).
func exactObject(path string, m map[string]any) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	v, err := profile.NormalizeValue(path, m)
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

func (w *wireEvent) event() (profile.Event, error) {
	var err error
	if w.Properties, err = exactObject("properties", w.Properties); err != nil {
		return profile.Event{}, err
	}
	if w.Context, err = exactObject("context", w.Context); err != nil {
		return profile.Event{}, err
	}
	return profile.Event{
		MessageID:  w.MessageID,
		Type:       w.Type,
		Source:     w.Source,
		Context:    w.Context,
		Name:       w.Name,
		Properties: w.Properties,
		Timestamp:  time.Time(w.Timestamp),
		ReceivedAt: time.Time(w.ReceivedAt),
	}, nil
}

func (w *wireRequest) request() (Request, error) {
	q := Request{
		ID:              w.ID,
		Type:            w.Type,
		Status:          w.Status,
		Reason:          w.Reason,
		Received:        time.Time(w.Received),
		Due:             time.Time(w.Due),
		Finished:        time.Time(w.Finished),
		ExtensionReason: w.ExtensionReason,
		ProfileVersion:  w.ProfileVersion,
	}
	for i, o := range w.Outcomes {
		out := Outcome{Kind: o.Kind, Name: o.Name, Status: o.Status, Err: o.Err, Finished: time.Time(o.Finished)}
		if err := checkOutcome(&out); err != nil {
			return Request{}, fmt.Errorf("outcomes[%d]: %w", i, err)
		}
		q.Outcomes = append(q.Outcomes, out)
	}
	return q, nil
}

func (w *wireRecipient) recipient() Recipient {
	return Recipient{Name: w.Name, FirstSent: time.Time(w.FirstSent), LastSent: time.Time(w.LastSent)}
}

func schemaError(got string) error {
	return fmt.Errorf("schema %q: this package reads %q", got, SchemaVersion)
}

// jsonReader reads the JSON format token by token, so that only one element of
// an array is decoded at a time.
type jsonReader struct {
	dec *json.Decoder
	p   Package
}

func readJSON(r io.Reader) (*Package, error) {
	jr := &jsonReader{dec: json.NewDecoder(r)}
	jr.dec.DisallowUnknownFields()
	jr.dec.UseNumber() // values' numbers exact; trait and event make them canonical
	if err := jr.document(); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: the document ends early: it is truncated", err)
		}
		return nil, fmt.Errorf("%w: json at byte %d: %w", ErrInvalid, jr.dec.InputOffset(), err)
	}
	return &jr.p, nil
}

func (jr *jsonReader) document() error {
	if err := jr.fields("the document", jr.documentField); err != nil {
		return err
	}
	if jr.p.Schema == "" {
		return fmt.Errorf("the document has no schema: it is not a %s export", SchemaVersion)
	}
	// Nothing but white space may follow.
	if _, err := jr.dec.Token(); err != io.EOF {
		if errors.As(err, new(*sourceError)) || errors.Is(err, errTooLarge) {
			return err
		}
		return errors.New("data after the end of the document")
	}
	return nil
}

// documentField reads the value of the document's member key.
func (jr *jsonReader) documentField(key string) error {
	switch key {
	case "schema":
		var s string
		if err := jr.dec.Decode(&s); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
		if s != SchemaVersion {
			return schemaError(s)
		}
		jr.p.Schema = s
		return nil
	case "request_id":
		return jr.decode("request_id", &jr.p.RequestID)
	case "generated_at":
		var t jsonTime
		err := jr.decode("generated_at", &t)
		jr.p.GeneratedAt = time.Time(t)
		return err
	case "suppression":
		var s wireSuppression
		err := jr.decode("suppression", &s)
		jr.p.Suppression.Suppressed = s.Suppressed
		return err
	case "profile":
		return jr.fields("profile", jr.profileField)
	case "events":
		return readArray(jr, "events", func(w *wireEvent) error {
			e, err := w.event()
			if err != nil {
				return err
			}
			jr.p.Events = append(jr.p.Events, e)
			return nil
		})
	case "audiences":
		o := order{sec: secAudiences}
		return readArray(jr, "audiences", func(k *string) error {
			if err := o.check(secAudiences, *k); err != nil {
				return err
			}
			o.add(secAudiences, *k)
			jr.p.Audiences = append(jr.p.Audiences, *k)
			return nil
		})
	case "requests":
		o := order{sec: secRequests}
		return readArray(jr, "requests", func(w *wireRequest) error {
			if err := o.check(secRequests, w.ID); err != nil {
				return err
			}
			q, err := w.request()
			if err != nil {
				return err
			}
			o.add(secRequests, w.ID)
			jr.p.Requests = append(jr.p.Requests, q)
			return nil
		})
	case "recipients":
		return readArray(jr, "recipients", func(w *wireRecipient) error {
			jr.p.Recipients = append(jr.p.Recipients, w.recipient())
			return nil
		})
	case "consent_history": // absent in an export from before consent was kept
		return readArray(jr, "consent_history", func(w *wireConsentChange) error {
			ch, err := w.consentChange()
			if err != nil {
				return err
			}
			jr.p.ConsentHistory = append(jr.p.ConsentHistory, ch)
			return nil
		})
	case "accounts": // absent in an export from before accounts were kept
		o := order{sec: secAccounts}
		return readArray(jr, "accounts", func(w *wireAccount) error {
			if err := o.check(secAccounts, w.GroupID); err != nil {
				return err
			}
			l, err := w.account()
			if err != nil {
				return err
			}
			o.add(secAccounts, w.GroupID)
			jr.p.Accounts = append(jr.p.Accounts, l)
			return nil
		})
	}
	return fmt.Errorf("unknown key %q in the document", key)
}

// profileField reads the value of the profile's member key.
func (jr *jsonReader) profileField(key string) error {
	switch key {
	case "id":
		var id string
		err := jr.decode("profile.id", &id)
		jr.p.Profile.ID = identity.ProfileID(id)
		return err
	case "metadata":
		var m wireMetadata
		if err := jr.decode("profile.metadata", &m); err != nil {
			return err
		}
		md, err := m.metadata()
		if err != nil {
			return fmt.Errorf("profile.metadata: %w", err)
		}
		jr.p.Profile.Metadata = md
		return nil
	case "external_ids":
		return readArray(jr, "profile.external_ids", func(w *wireIdentifier) error {
			jr.p.Profile.ExternalIDs = append(jr.p.Profile.ExternalIDs, w.identifier())
			return nil
		})
	case "traits":
		return jr.traits()
	}
	return fmt.Errorf("unknown key %q in profile", key)
}

func (jr *jsonReader) traits() error {
	if err := jr.delim('{', "profile.traits"); err != nil {
		return err
	}
	for jr.dec.More() {
		tok, err := jr.dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string) // inside an object, Token returns keys as strings
		var w wireTrait
		if err := jr.dec.Decode(&w); err != nil {
			return fmt.Errorf("profile.traits[%q]: %w", key, err)
		}
		t, err := w.trait()
		if err != nil {
			return fmt.Errorf("profile.traits[%q]: %w", key, err)
		}
		if _, dup := jr.p.Profile.Traits[key]; dup {
			return fmt.Errorf("trait %q appears twice", key)
		}
		if jr.p.Profile.Traits == nil {
			jr.p.Profile.Traits = make(map[string]profile.Trait)
		}
		jr.p.Profile.Traits[key] = t
	}
	return jr.delim('}', "profile.traits")
}

func (jr *jsonReader) decode(what string, v any) error {
	if err := jr.dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// key reads an object's key, refusing one seen before.
func (jr *jsonReader) key(in string, seen *[]string) (string, error) {
	tok, err := jr.dec.Token()
	if err != nil {
		return "", err
	}
	key := tok.(string) // inside an object, Token returns keys as strings
	if contains(*seen, key) {
		return "", fmt.Errorf("key %q appears twice in %s", key, in)
	}
	*seen = append(*seen, key)
	return key, nil
}

// delim reads the delimiter d.
func (jr *jsonReader) delim(d json.Delim, what string) error {
	tok, err := jr.dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("%s: want %q, found %s", what, d, describe(tok))
	}
	return nil
}

// fields reads an object with named members, what in errors, each member at
// most once: the decoder is at the member's value when field is called with
// its key. The document and the profile are such objects.
func (jr *jsonReader) fields(what string, field func(key string) error) error {
	if err := jr.delim('{', what); err != nil {
		return err
	}
	var seen []string
	for jr.dec.More() {
		key, err := jr.key(what, &seen)
		if err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
	}
	return jr.delim('}', what)
}

// readArray reads the JSON array what, decoding its elements one at a time
// into a T and passing each to add; an error is named after its element, as
// what[i].
func readArray[T any](jr *jsonReader, what string, add func(*T) error) error {
	if err := jr.delim('[', what); err != nil {
		return err
	}
	for i := 0; jr.dec.More(); i++ {
		var v T
		if err := jr.dec.Decode(&v); err != nil {
			return fmt.Errorf("%s[%d]: %w", what, i, err)
		}
		if err := add(&v); err != nil {
			return fmt.Errorf("%s[%d]: %w", what, i, err)
		}
	}
	return jr.delim(']', what)
}

// describe names a JSON token for an error message.
func describe(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		return fmt.Sprintf("%q", t)
	case string:
		return fmt.Sprintf("a string of %d bytes", len(t))
	case bool:
		return fmt.Sprintf("%v", t)
	}
	return fmt.Sprintf("the number %v", tok)
}

func contains(s []string, x string) bool {
	for _, e := range s {
		if e == x {
			return true
		}
	}
	return false
}

// The NDJSON records that differ from the JSON document's elements: each has a
// kind, and the header and trailer are records of their own.
type (
	ndKind struct {
		Kind *string `json:"kind"`
	}
	ndHeader struct {
		Kind        string          `json:"kind"`
		Schema      string          `json:"schema"`
		RequestID   string          `json:"request_id"`
		GeneratedAt jsonTime        `json:"generated_at"`
		ProfileID   string          `json:"profile_id"`
		Metadata    wireMetadata    `json:"metadata"`
		Suppression wireSuppression `json:"suppression"`
	}
	ndIdentifier struct {
		Kind string `json:"kind"`
		wireIdentifier
	}
	ndTrait struct {
		Kind string `json:"kind"`
		Key  string `json:"key"`
		wireTrait
	}
	ndEvent struct {
		Kind string `json:"kind"`
		wireEvent
	}
	ndAudience struct {
		Kind string `json:"kind"`
		Key  string `json:"key"`
	}
	ndRequest struct {
		Kind string `json:"kind"`
		wireRequest
	}
	ndRecipient struct {
		Kind string `json:"kind"`
		wireRecipient
	}
	ndConsentChange struct {
		Kind string `json:"kind"`
		wireConsentChange
	}
	ndAccount struct {
		Kind string `json:"kind"`
		wireAccount
	}
	ndEnd struct {
		Kind   string `json:"kind"`
		Counts struct {
			Identifier int `json:"identifier"`
			Trait      int `json:"trait"`
			Event      int `json:"event"`
			Audience   int `json:"audience"`
			Request    int `json:"request"`
			Recipient  int `json:"recipient"`
			// ConsentChange is 0 in an export from before consent was
			// kept, whose end record has no such member.
			ConsentChange int `json:"consent_change"`
			// Account is 0 in an export from before accounts were kept.
			Account int `json:"account"`
		} `json:"counts"`
	}
)

// ndReader checks the NDJSON format's records line by line.
type ndReader struct {
	order order
}

// readNDJSON reads an NDJSON export through a Scanner.
func readNDJSON(r io.Reader) (*Package, error) {
	s := NewScanner(r, DefaultMaxRecord)
	p := &Package{Schema: SchemaVersion}
	for s.Scan() {
		rec := s.Record()
		rec.addTo(p)
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// readLine returns the next line without its newline, appended to buf; io.EOF
// when there is none; errLineTooLong as soon as the line is longer than max
// bytes, without reading the rest of it.
func readLine(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > max+1 { // +1: the newline
			return nil, errLineTooLong
		}
		buf = append(buf, chunk...)
		switch err {
		case nil:
			return buf[:len(buf)-1], nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(buf) == 0 {
				return nil, io.EOF
			}
			if len(buf) > max {
				return nil, errLineTooLong
			}
			return buf, nil // the last line may lack its newline
		}
		return nil, err
	}
}

// record checks one line and sets out to its record; end reports the end
// record, which sets nothing.
func (nr *ndReader) record(line []byte, out *Record) (end bool, err error) {
	if len(line) == 0 {
		return false, errors.New("empty line")
	}
	var k ndKind
	if err := json.Unmarshal(line, &k); err != nil {
		return false, err
	}
	if k.Kind == nil {
		return false, errors.New(`the record has no "kind"`)
	}
	s, ok := sectionOf(*k.Kind)
	if !ok {
		return false, fmt.Errorf("unknown kind %.40q", *k.Kind)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	dec.UseNumber() // values' numbers exact; trait and event make them canonical
	if s == secEnd {
		return true, nr.end(dec)
	}
	rec := newNDRecord[s]()
	if err := dec.Decode(rec); err != nil {
		return false, err
	}
	if h, ok := rec.(*ndHeader); ok && h.Schema != SchemaVersion {
		return false, schemaError(h.Schema)
	}
	key := rec.orderKey()
	if err := nr.order.check(s, key); err != nil {
		return false, err
	}
	if err := rec.fill(out); err != nil {
		return false, err
	}
	nr.order.add(s, key)
	return false, nil
}

// end reads the end record, whose counts must be those of the records read.
func (nr *ndReader) end(dec *json.Decoder) error {
	var w ndEnd
	if err := dec.Decode(&w); err != nil {
		return err
	}
	if err := nr.order.check(secEnd, ""); err != nil {
		return err
	}
	c := &w.Counts
	for _, x := range []struct {
		s    section
		want int
	}{{secIdentifiers, c.Identifier}, {secTraits, c.Trait}, {secEvents, c.Event},
		{secAudiences, c.Audience}, {secRequests, c.Request}, {secRecipients, c.Recipient},
		{secConsent, c.ConsentChange}, {secAccounts, c.Account}} {
		if got := nr.order.n[x.s]; got != x.want {
			return fmt.Errorf("the end record counts %d %s records, the export has %d: records are missing or added", x.want, x.s, got)
		}
	}
	nr.order.sec = secEnd
	return nil
}

// ndRecord is an NDJSON record of a section before the end. Every one is read
// the same way: decoded whole, its key's place in the order checked, then
// added to the package.
type ndRecord interface {
	// orderKey is the key the order checks: a trait or audience key, a request
	// id; "" in the other sections.
	orderKey() string
	// fill sets out to the record.
	fill(out *Record) error
}

// newNDRecord makes an empty record of each section, for Decode to fill.
var newNDRecord = [...]func() ndRecord{
	secHeader:      func() ndRecord { return new(ndHeader) },
	secIdentifiers: func() ndRecord { return new(ndIdentifier) },
	secTraits:      func() ndRecord { return new(ndTrait) },
	secEvents:      func() ndRecord { return new(ndEvent) },
	secAudiences:   func() ndRecord { return new(ndAudience) },
	secRequests:    func() ndRecord { return new(ndRequest) },
	secRecipients:  func() ndRecord { return new(ndRecipient) },
	secConsent:     func() ndRecord { return new(ndConsentChange) },
	secAccounts:    func() ndRecord { return new(ndAccount) },
}

func (*ndHeader) orderKey() string        { return "" }
func (*ndIdentifier) orderKey() string    { return "" }
func (w *ndTrait) orderKey() string       { return w.Key }
func (*ndEvent) orderKey() string         { return "" }
func (w *ndAudience) orderKey() string    { return w.Key }
func (w *ndRequest) orderKey() string     { return w.ID }
func (*ndRecipient) orderKey() string     { return "" }
func (*ndConsentChange) orderKey() string { return "" }
func (w *ndAccount) orderKey() string     { return w.GroupID }

func (h *ndHeader) fill(out *Record) error {
	md, err := h.Metadata.metadata()
	if err != nil {
		return fmt.Errorf("header: metadata: %w", err)
	}
	out.Kind = KindHeader
	out.Header = Header{Schema: h.Schema, GeneratedAt: time.Time(h.GeneratedAt), RequestID: h.RequestID,
		ProfileID: identity.ProfileID(h.ProfileID), Metadata: md, Suppression: Suppression{Suppressed: h.Suppression.Suppressed}}
	return nil
}

func (w *ndIdentifier) fill(out *Record) error {
	out.Kind, out.Identifier = KindIdentifier, w.identifier()
	return nil
}

func (w *ndTrait) fill(out *Record) error {
	t, err := w.trait()
	if err != nil {
		return fmt.Errorf("trait %q: %w", w.Key, err)
	}
	out.Kind, out.TraitKey, out.Trait = KindTrait, w.Key, t
	return nil
}

func (w *ndEvent) fill(out *Record) error {
	out.Kind = KindEvent
	return converted(&out.Event, w.event, "event")
}

func (w *ndAudience) fill(out *Record) error {
	out.Kind, out.Audience = KindAudience, w.Key
	return nil
}

func (w *ndRequest) fill(out *Record) error {
	out.Kind = KindRequest
	return converted(&out.Request, w.request, "request")
}

func (w *ndRecipient) fill(out *Record) error {
	out.Kind, out.Recipient = KindRecipient, w.recipient()
	return nil
}

func (w *ndConsentChange) fill(out *Record) error {
	out.Kind = KindConsentChange
	return converted(&out.ConsentChange, w.consentChange, "consent_change")
}

func (w *ndAccount) fill(out *Record) error {
	out.Kind = KindAccount
	return converted(&out.Account, w.account, "account")
}

// converted sets *dst to what convert makes of a record's wire form, or
// returns convert's error naming the kind of record.
func converted[T any](dst *T, convert func() (T, error), what string) error {
	v, err := convert()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	*dst = v
	return nil
}
