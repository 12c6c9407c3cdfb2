package segmentapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/profile"
)

// wireMessage is one message as Segment's libraries send it: the body of
// /v1/track and its siblings, or one element of a batch.
type wireMessage struct {
	Type              string         `json:"type"`
	MessageID         wireID         `json:"messageId"`
	UserID            wireID         `json:"userId"`
	AnonymousID       wireID         `json:"anonymousId"`
	Event             string         `json:"event"`
	Name              string         `json:"name"`
	Category          string         `json:"category"`
	GroupID           wireID         `json:"groupId"`
	PreviousID        wireID         `json:"previousId"`
	Traits            map[string]any `json:"traits"`
	Properties        map[string]any `json:"properties"`
	Context           map[string]any `json:"context"`
	Integrations      map[string]any `json:"integrations"`
	Timestamp         wireTime       `json:"timestamp"`
	SentAt            wireTime       `json:"sentAt"`
	OriginalTimestamp wireTime       `json:"originalTimestamp"`
	// WriteKey authenticates a request without HTTP Basic credentials, as
	// analytics-python sends it.
	WriteKey string `json:"writeKey"`

	// raw is the message's JSON as sent: a message without a messageId
	// is given one derived from it (derivedID).
	raw []byte
}

// wireBatch is the body of /v1/batch (and /v1/import), read: its messages,
// each decoded or refused on its own, and the envelope's context,
// integrations and sentAt, which apply to every message that lacks its own.
type wireBatch struct {
	Entries      []batchEntry
	Context      map[string]any
	Integrations map[string]any
	SentAt       wireTime
	WriteKey     string
	// Surplus counts the messages past MaxBatchMessages, skipped unread.
	Surplus int
}

// batchEntry is one message of a batch: decoded, or why it could not be.
type batchEntry struct {
	msg *wireMessage
	err *messageError
}

// wireID is an identifier field: a string, or a number, which Segment's
// browser library lets through and Segment takes as its text.
type wireID string

func (id *wireID) UnmarshalJSON(b []byte) error {
	if s, ok := plainString(b); ok {
		*id = wireID(s)
		return nil
	}
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*id = wireID(s)
	case string(b) == "null":
		*id = ""
	case len(b) > 0 && (b[0] == '-' || b[0] >= '0' && b[0] <= '9'):
		*id = wireID(b)
	default:
		return errWantString
	}
	return nil
}

var (
	errWantString = errors.New("want a string")
	errWantTime   = errors.New("want an ISO 8601 date and time")
)

// wireTime is an ISO 8601 time as Segment takes it: RFC 3339, with or
// without fractional seconds, a zone written without its colon, or no zone
// (then UTC). Empty and null are the zero time.
type wireTime time.Time

// timeLayouts are the forms of ISO 8601 Segment's libraries and their
// users send, tried in order.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02",
}

func (t *wireTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = wireTime{}
		return nil
	}
	s, ok := plainString(b)
	if !ok {
		if len(b) == 0 || b[0] != '"' {
			return errWantTime
		}
		if err := json.Unmarshal(b, &s); err != nil {
			return errWantTime
		}
	}
	if s == "" {
		*t = wireTime{}
		return nil
	}
	for _, layout := range timeLayouts {
		if v, err := time.Parse(layout, s); err == nil {
			*t = wireTime(v)
			return nil
		}
	}
	return errWantTime
}

// derivedContent is what a message sent without a messageId is known by
// (privacy.Controller.MessageIDFor): its source, its type (a path's, for
// the single endpoints) and its JSON as sent.
func derivedContent(source, typ string, raw []byte) []byte {
	b := make([]byte, 0, len(source)+len(typ)+2+len(raw))
	b = append(b, source...)
	b = append(b, 0)
	b = append(b, typ...)
	b = append(b, 0)
	return append(b, raw...)
}

// plainString returns the text of b, a JSON string, when it holds no
// escape and no byte that is not printable ASCII: then it is its bytes,
// and the common identifier or timestamp is read without a second
// decoding. Others take encoding/json's path.
func plainString(b []byte) (string, bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", false
	}
	for _, c := range b[1 : len(b)-1] {
		if c < 0x20 || c >= 0x7f || c == '\\' || c == '"' {
			return "", false
		}
	}
	return string(b[1 : len(b)-1]), true
}

// messageError is a message the API could not read: which field, and why.
// It never quotes the value.
type messageError struct {
	Field  string
	Reason string
}

func (e *messageError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// decodeMessage reads one message from b. Numbers anywhere in its traits,
// properties, context and integrations are kept exactly (profile.DecodeValue).
func decodeMessage(b []byte) (*wireMessage, error) {
	m := wireMessage{raw: b}
	numbers, err := profile.UnmarshalNumbers(b, &m)
	if err != nil {
		return nil, jsonError(err)
	}
	if numbers {
		if err := profile.ExactMaps(&m.Traits, &m.Properties, &m.Context, &m.Integrations); err != nil {
			return nil, &messageError{Reason: "a number is not valid"}
		}
	}
	return &m, nil
}

// decodeBatch reads a batch in one pass: a json.Decoder steps into its
// "batch" array and decodes each message in place, so that the body is
// scanned once and no message is copied out first. A message of the wrong
// shape, or over MaxMessageBytes, fails alone; text that is not JSON fails
// the batch.
func decodeBatch(b []byte) (*wireBatch, error) {
	numbers := profile.MayRound(b)
	dec := json.NewDecoder(bytes.NewReader(b))
	if numbers {
		dec.UseNumber()
	}
	var wb wireBatch
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonError(err)
		}
		var dst any
		// Case-insensitively, as encoding/json matches a message's own keys.
		switch key := strings.ToLower(tok.(string)); key {
		case "batch":
			if err := decodeEntries(dec, b, &wb, numbers); err != nil {
				return nil, err
			}
			seen = true
			continue
		case "context":
			dst = &wb.Context
		case "integrations":
			dst = &wb.Integrations
		case "sentat":
			dst = &wb.SentAt
		case "writekey":
			dst = &wb.WriteKey
		default:
			dst = new(json.RawMessage) // skipped
		}
		if err := dec.Decode(dst); err != nil {
			e := jsonError(err)
			if e.Field == "" {
				e.Field = tok.(string)
			}
			return nil, e
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &messageError{Reason: "invalid JSON: text after the batch"}
	}
	if numbers {
		if err := profile.ExactMaps(&wb.Context, &wb.Integrations); err != nil {
			return nil, &messageError{Reason: "a number is not valid"}
		}
	}
	if !seen {
		return nil, &messageError{Field: "batch", Reason: "missing: want an array of messages"}
	}
	return &wb, nil
}

// decodeEntries reads the batch array's messages into wb.Entries.
func decodeEntries(dec *json.Decoder, body []byte, wb *wireBatch, numbers bool) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	if tok == nil { // "batch": null
		wb.Entries = nil
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return &messageError{Field: "batch", Reason: "want an array of messages"}
	}
	wb.Entries, wb.Surplus = wb.Entries[:0], 0
	var skip json.RawMessage
	for dec.More() {
		if len(wb.Entries) == MaxBatchMessages {
			// Refused unread, and answered as one: the surplus of a small
			// gzipped body costs no more than its bytes.
			if err := dec.Decode(&skip); err != nil {
				return jsonError(err)
			}
			wb.Surplus++
			continue
		}
		start := dec.InputOffset()
		m := new(wireMessage)
		err := dec.Decode(m)
		raw := bytes.TrimLeft(body[start:dec.InputOffset()], ", \t\r\n")
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) {
			return jsonError(err)
		}
		var entry batchEntry
		switch {
		case len(raw) > MaxMessageBytes:
			entry.err = &messageError{Reason: "the message is larger than " + strconv.Itoa(MaxMessageBytes>>10) + " KB"}
		case err != nil:
			entry.err = jsonError(err)
		case numbers:
			if err := profile.ExactMaps(&m.Traits, &m.Properties, &m.Context, &m.Integrations); err != nil {
				entry.err = &messageError{Reason: "a number is not valid"}
			}
		}
		if entry.err == nil {
			m.raw = raw
			entry.msg = m
		}
		wb.Entries = append(wb.Entries, entry)
	}
	_, err = dec.Token() // ']'
	if err != nil {
		return jsonError(err)
	}
	return nil
}

// expectDelim reads the token d.
func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return &messageError{Reason: "want a JSON object"}
	}
	return nil
}

// jsonError says what encoding/json found wrong, by field and position,
// without the text it quotes (a character, a value: personal data).
func jsonError(err error) *messageError {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return &messageError{Reason: "invalid JSON at byte " + strconv.FormatInt(syntax.Offset, 10)}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return &messageError{Reason: "want a JSON object"}
		}
		return &messageError{Field: field, Reason: "want " + jsonKind(typ.Type.Kind().String())}
	case errors.Is(err, errWantString), errors.Is(err, errWantTime):
		// encoding/json does not say which field an Unmarshaler failed in.
		return &messageError{Reason: "a field has the wrong type: " + err.Error()}
	}
	return &messageError{Reason: "invalid JSON"}
}

func jsonKind(kind string) string {
	switch kind {
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "string":
		return "a string"
	}
	return "another type"
}

// message turns m into the Controller's message of type typ (the path's,
// or m's own in a batch), sent by source and received at receivedAt; the
// batch's envelope fills what m leaves out.
func (m *wireMessage) message(c *privacy.Controller, typ, source string, receivedAt time.Time, env *wireBatch) (privacy.Message, error) {
	ctx, integrations, sentAt := m.Context, m.Integrations, time.Time(m.SentAt)
	if env != nil {
		ctx = mergeObjects(ctx, env.Context)
		if integrations == nil {
			integrations = env.Integrations
		}
		if sentAt.IsZero() {
			sentAt = time.Time(env.SentAt)
		}
	}
	ts, orig := time.Time(m.Timestamp), time.Time(m.OriginalTimestamp)
	if m.MessageID == "" && typ != "" {
		m.MessageID = wireID(c.MessageIDFor(derivedContent(source, typ, m.raw)))
	}
	switch typ {
	case "identify":
		return privacy.Identify{MessageID: string(m.MessageID), UserID: string(m.UserID), AnonymousID: string(m.AnonymousID),
			Traits: m.Traits, Timestamp: ts, Source: source, Context: ctx, Integrations: integrations,
			SentAt: sentAt, ReceivedAt: receivedAt, OriginalTimestamp: orig}, nil
	case "track":
		return privacy.Track{MessageID: string(m.MessageID), UserID: string(m.UserID), AnonymousID: string(m.AnonymousID),
			Event: m.Event, Properties: m.Properties, Timestamp: ts, Source: source, Context: ctx, Integrations: integrations,
			SentAt: sentAt, ReceivedAt: receivedAt, OriginalTimestamp: orig}, nil
	case "page":
		return privacy.Page{MessageID: string(m.MessageID), UserID: string(m.UserID), AnonymousID: string(m.AnonymousID),
			Name: m.Name, Category: m.Category, Properties: m.Properties, Timestamp: ts, Source: source, Context: ctx,
			Integrations: integrations, SentAt: sentAt, ReceivedAt: receivedAt, OriginalTimestamp: orig}, nil
	case "screen":
		return privacy.Screen{MessageID: string(m.MessageID), UserID: string(m.UserID), AnonymousID: string(m.AnonymousID),
			Name: m.Name, Properties: m.Properties, Timestamp: ts, Source: source, Context: ctx, Integrations: integrations,
			SentAt: sentAt, ReceivedAt: receivedAt, OriginalTimestamp: orig}, nil
	case "group":
		return privacy.Group{MessageID: string(m.MessageID), UserID: string(m.UserID), AnonymousID: string(m.AnonymousID),
			GroupID: string(m.GroupID), Traits: m.Traits, Timestamp: ts, Source: source, Context: ctx, Integrations: integrations,
			SentAt: sentAt, ReceivedAt: receivedAt, OriginalTimestamp: orig}, nil
	case "alias":
		return privacy.Alias{MessageID: string(m.MessageID), UserID: string(m.UserID), AnonymousID: string(m.AnonymousID),
			PreviousID: string(m.PreviousID), Timestamp: ts, Source: source, Context: ctx, Integrations: integrations,
			SentAt: sentAt, ReceivedAt: receivedAt, OriginalTimestamp: orig}, nil
	case "":
		return nil, &messageError{Field: "type", Reason: "missing"}
	}
	return nil, &messageError{Field: "type", Reason: fmt.Sprintf("unknown: want one of %s", messageTypes)}
}

const messageTypes = "identify, track, page, screen, group, alias"

// mergeObjects returns own with the keys of shared it lacks: a batch's
// context under each message's own. Neither is changed.
func mergeObjects(own, shared map[string]any) map[string]any {
	if len(shared) == 0 {
		return own
	}
	if len(own) == 0 {
		return shared
	}
	missing := false
	for k := range shared {
		if _, ok := own[k]; !ok {
			missing = true
			break
		}
	}
	if !missing {
		return own
	}
	out := make(map[string]any, len(own)+len(shared))
	for k, v := range shared {
		out[k] = v
	}
	for k, v := range own {
		out[k] = v
	}
	return out
}
