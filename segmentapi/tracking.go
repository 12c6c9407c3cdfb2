package segmentapi

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gdprkit/privacy"
)

// Segment's bounds on what its Tracking API takes.
const (
	// MaxMessageBytes bounds one message: the body of /v1/track and its
	// siblings, or one message of a batch (32 KB).
	MaxMessageBytes = 32 << 10
	// MaxBatchBytes bounds the body of /v1/batch and /v1/import (500 KB),
	// counted after gzip decompression.
	MaxBatchBytes = 500 << 10
	// MaxBatchMessages bounds the messages of a batch (2,500): as Segment
	// does, the batch is answered 200 and the messages past the bound are
	// refused, each listed in the answer.
	MaxBatchMessages = 2500
)

// NewTracking returns Segment's Tracking HTTP API over c: POST /v1/identify,
// /v1/track, /v1/page, /v1/screen, /v1/group, /v1/alias, and /v1/batch with
// its older name /v1/import. Segment's libraries (analytics-go,
// analytics-node, ...) pointed at it work unchanged.
//
// Requests authenticate as Segment's do: HTTP Basic with a write key given
// by WithWriteKey as the user name, or without credentials, the key as the
// body's writeKey; the key's source id becomes each message's Source.
// Unlike Segment's edge, which answers 200 to any key, an unknown key is
// refused (401) and its body is neither stored nor described; without a
// write key configured every request is refused.
// Bodies may be gzipped (Content-Encoding: gzip). A message is at most
// MaxMessageBytes and a batch at most MaxBatchBytes, as in Segment; larger
// ones are refused (400) and change nothing; so are the messages of a batch
// past MaxBatchMessages, listed as one refusal at the index of the first. receivedAt is stamped by the
// handler, and a batch's context, integrations and sentAt fill what its
// messages leave out.
//
// Answers: 200 {"success": true} once the message is stored, or a repeat
// of one, or about a suppressed person: the API does not tell a write key
// holder (a browser, say) who objected. A message the Controller refuses
// (privacy.ErrInvalid: no identifier, a track without an event, ...) gets
// 400 naming the field, never quoting a value: unlike Segment's edge, which
// answers 200 and drops it out of sight, so the sender learns it was not
// stored (Segment's libraries log the answer and do not send it again). A
// batch answers 200 when
// every message was stored or refused for good, listing the refused ones
// by index in "errors"; it answers 503 when a backend failed any message,
// so that the client sends the batch again (the stored ones are then
// repeats, stored once: a message without a messageId is given one derived
// from its source, type and JSON under the Controller's key
// (privacy.Controller.MessageIDFor), so two identical messages without one
// are one message). Server-side failures are logged by class only.
//
// Batches that arrive while others are being collected are collected with
// them, in one CollectBatch of up to privacy.BatchSize messages: on a SQL
// backend a call costs about a dozen statements and a commit whatever its
// size, and eight connections each sending 100 messages made eight calls
// waiting on each other's locks. A batch alone is collected at once; one
// waits at most a quarter of a second behind calls stuck on their backend
// before it starts its own; one whose client leaves is answered at once.
func NewTracking(c *privacy.Controller, opts ...Option) http.Handler {
	if c == nil {
		panic("segmentapi: NewTracking: nil Controller")
	}
	t := &tracking{c: c, cfg: newConfig(opts), group: &grouper{c: c, most: 2, stuckAfter: 250 * time.Millisecond}}
	mux := http.NewServeMux()
	for _, typ := range []string{"identify", "track", "page", "screen", "group", "alias"} {
		mux.Handle("POST /v1/"+typ, t.auth(func(w http.ResponseWriter, r *http.Request, source string) {
			t.single(w, r, typ, source)
		}))
	}
	mux.Handle("POST /v1/batch", t.auth(t.batch))
	mux.Handle("POST /v1/import", t.auth(t.batch))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(trackingPaths, r.URL.Path) {
			w.Header().Set("Allow", http.MethodPost)
			trackingError(w, http.StatusMethodNotAllowed, "method_not_allowed", "the Tracking API takes POST")
			return
		}
		trackingError(w, http.StatusNotFound, "not_found", "no such endpoint: the Tracking API takes POST /v1/{identify,track,page,screen,group,alias,batch,import}")
	})
	return mux
}

// trackingPaths are the Tracking API's endpoints.
var trackingPaths = []string{"/v1/identify", "/v1/track", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias", "/v1/batch", "/v1/import"}

type tracking struct {
	c     *privacy.Controller
	cfg   *config
	group *grouper // batches' messages, collected together
}

// trackingAnswer is the Tracking API's answer. Errors lists, for a batch,
// the messages refused (by index); for one message, why it was.
type trackingAnswer struct {
	Success bool           `json:"success"`
	Code    string         `json:"code,omitempty"`
	Message string         `json:"message,omitempty"`
	Errors  []messageIssue `json:"errors,omitempty"`
}

// messageIssue is why the message at Index of a batch was refused.
type messageIssue struct {
	Index   int    `json:"index"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func trackingError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, trackingAnswer{Code: code, Message: message})
}

// auth runs next with the source of r's write key, or refuses r. A
// request without HTTP Basic credentials goes on with no source: the
// handler then takes the write key from the body (writeKey), as Segment
// does, and refuses the request without a valid one.
func (t *tracking) auth(next func(http.ResponseWriter, *http.Request, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, basic := r.BasicAuth(); !basic {
			next(w, r, "")
			return
		}
		src, ok := t.cfg.source(basicUser(r))
		if !ok {
			unauthorized(w)
			return
		}
		next(w, r, src)
	})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="Segment Tracking API"`)
	trackingError(w, http.StatusUnauthorized, "unauthorized", "a valid write key is required, as the HTTP Basic user name or the body's writeKey")
}

// bodySource returns the source of a request that came without HTTP Basic
// credentials, from the write key in its body.
func (t *tracking) bodySource(source, writeKey string) (string, bool) {
	if source != "" {
		return source, true
	}
	return t.cfg.source(writeKey)
}

// bodyFailure answers a body that could not be read.
func bodyFailure(w http.ResponseWriter, err error, limit int) {
	switch {
	case errors.Is(err, errTooLarge):
		trackingError(w, http.StatusBadRequest, "payload_too_large", "the body is larger than "+strconv.Itoa(limit>>10)+" KB")
	case errors.Is(err, errEncoding):
		trackingError(w, http.StatusUnsupportedMediaType, "invalid_request", "unsupported Content-Encoding: want gzip or none")
	case errors.Is(err, errGzip):
		trackingError(w, http.StatusBadRequest, "invalid_request", "the gzip body is corrupt")
	default:
		trackingError(w, http.StatusBadRequest, "invalid_request", "the body could not be read")
	}
}

func (t *tracking) single(w http.ResponseWriter, r *http.Request, typ, source string) {
	b, err := readBody(w, r, MaxMessageBytes)
	if err != nil {
		bodyFailure(w, err, MaxMessageBytes)
		return
	}
	received := t.cfg.now()
	wm, err := decodeMessage(b)
	if err != nil {
		if source == "" {
			unauthorized(w) // nothing about the body to one who may not send it
			return
		}
		trackingError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	source, ok := t.bodySource(source, wm.WriteKey)
	if !ok {
		unauthorized(w)
		return
	}
	msg, err := wm.message(t.c, typ, source, received, nil)
	if err == nil {
		err = t.c.Collect(r.Context(), msg)
	}
	status, code, text := collectOutcome(err)
	if status >= 500 {
		t.cfg.logFailure(r, "collect", err)
	}
	if status == http.StatusOK {
		writeJSON(w, status, trackingAnswer{Success: true})
		return
	}
	trackingError(w, status, code, text)
}

func (t *tracking) batch(w http.ResponseWriter, r *http.Request, source string) {
	b, err := readBody(w, r, MaxBatchBytes)
	if err != nil {
		bodyFailure(w, err, MaxBatchBytes)
		return
	}
	received := t.cfg.now()
	env, err := decodeBatch(b)
	if err != nil {
		if source == "" {
			unauthorized(w)
			return
		}
		trackingError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	source, ok := t.bodySource(source, env.WriteKey)
	if !ok {
		unauthorized(w)
		return
	}
	var issues []messageIssue
	msgs := make([]privacy.Message, 0, len(env.Entries))
	index := make([]int, 0, len(env.Entries)) // index[i]: msgs[i]'s place in the batch
	for i, entry := range env.Entries {
		var msg privacy.Message
		var err error
		if entry.err != nil {
			err = entry.err
		} else {
			msg, err = entry.msg.message(t.c, entry.msg.Type, source, received, env)
		}
		if err != nil {
			issues = append(issues, messageIssue{Index: i, Code: "invalid_request", Message: err.Error()})
			continue
		}
		msgs = append(msgs, msg)
		index = append(index, i)
	}
	err = t.group.collect(r.Context(), msgs)
	var be *privacy.BatchError
	failed := err != nil && !errors.As(err, &be) // the batch as a whole
	var cause error = err
	if be != nil {
		for i, e := range be.Errs {
			status, code, text := collectOutcome(e)
			switch {
			case status == http.StatusOK:
			case status >= 500:
				failed, cause = true, e
			default:
				issues = append(issues, messageIssue{Index: index[i], Code: code, Message: text})
			}
		}
	}
	if failed {
		t.cfg.logFailure(r, "collect batch", cause)
		status, code, text := collectOutcome(cause)
		trackingError(w, status, code, text)
		return
	}
	sortIssues(issues)
	if env.Surplus > 0 {
		issues = append(issues, messageIssue{Index: MaxBatchMessages, Code: "invalid_request",
			Message: "the batch holds more than " + strconv.Itoa(MaxBatchMessages) + " messages: the " + strconv.Itoa(env.Surplus) + " from this index on are refused"})
	}
	writeJSON(w, http.StatusOK, trackingAnswer{Success: true, Errors: issues})
}

// sortIssues orders issues by index: refused while reading, and refused
// by the Controller, come in two runs.
func sortIssues(issues []messageIssue) {
	slices.SortFunc(issues, func(a, b messageIssue) int { return cmp.Compare(a.Index, b.Index) })
}

// collectOutcome maps what Collect returned to the answer's status, code
// and text. A suppressed person's message answers as a stored one.
func collectOutcome(err error) (status int, code, text string) {
	var fe *privacy.FieldError
	switch {
	case err == nil, errors.Is(err, privacy.ErrSuppressed):
		return http.StatusOK, "", ""
	case errors.As(err, &fe):
		return http.StatusBadRequest, "invalid_request", fe.Error()
	case errors.As(err, new(*messageError)):
		return http.StatusBadRequest, "invalid_request", err.Error()
	case errors.Is(err, privacy.ErrInvalid):
		return http.StatusBadRequest, "invalid_request", "the message is not valid"
	case errors.Is(err, privacy.ErrClosed):
		return http.StatusServiceUnavailable, "unavailable", "the service is shutting down: send again later"
	}
	return http.StatusServiceUnavailable, "server_error", "the message could not be stored: send again later"
}
