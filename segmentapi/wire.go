package segmentapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
}

// wireBatch is the body of /v1/batch (and /v1/import). Its context,
// integrations and sentAt apply to every message that lacks its own.
type wireBatch struct {
	Batch        []json.RawMessage `json:"batch"`
	Context      map[string]any    `json:"context"`
	Integrations map[string]any    `json:"integrations"`
	SentAt       wireTime          `json:"sentAt"`
	WriteKey     string            `json:"writeKey"`
}

// wireID is an identifier field: a string, or a number, which Segment's
// browser library lets through and Segment takes as its text.
type wireID string

func (id *wireID) UnmarshalJSON(b []byte) error {
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
	if len(b) == 0 || b[0] != '"' {
		return errWantTime
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errWantTime
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
	var m wireMessage
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

// decodeBatch reads a batch's envelope; its messages stay raw, each
// decoded on its own so that one bad message fails alone.
func decodeBatch(b []byte) (*wireBatch, error) {
	var wb wireBatch
	numbers, err := profile.UnmarshalNumbers(b, &wb)
	if err != nil {
		return nil, jsonError(err)
	}
	if numbers {
		if err := profile.ExactMaps(&wb.Context, &wb.Integrations); err != nil {
			return nil, &messageError{Reason: "a number is not valid"}
		}
	}
	if wb.Batch == nil {
		return nil, &messageError{Field: "batch", Reason: "missing: want an array of messages"}
	}
	return &wb, nil
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
func (m *wireMessage) message(typ, source string, receivedAt time.Time, env *wireBatch) (privacy.Message, error) {
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

// isObject reports whether b, a JSON value, is an object.
func isObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}
