package segmentapi

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// The Profile API's page sizes, as Segment's.
const (
	// DefaultProfileLimit is the page size when limit is not given.
	DefaultProfileLimit = 10
	// MaxTraitsLimit is the largest limit the traits endpoint takes.
	MaxTraitsLimit = 200
	// MaxProfileLimit is the largest limit the events and external_ids
	// endpoints take.
	MaxProfileLimit = 100
)

// NewProfiles returns Segment's Profile API over c, read-only:
//
//	GET /v1/spaces/{space_id}/collections/{users|accounts}/profiles/{external_id}/traits
//	                                                                 .../events
//	                                                                 .../external_ids
//	                                                                 .../links
//	                                                                 .../metadata
//
// external_id is any identifier as type:value (user_id:42, email:a@b.c,
// anonymous_id:...); in the accounts collection, group_id:{groupId}. The
// query parameters are Segment's: include, exclude (events), limit (10 by
// default, at most 200 traits or 100 events or identifiers), next, verbose
// (traits), class (traits: "audience" lists only the audiences the person
// is in, as true traits; "computed_trait" lists none, as the library
// computes no traits; without it, the person's traits and audiences),
// start, end and sort (events). Answers carry Segment's cursor {url,
// has_more, next}, but for links, which Segment does not page. An
// account's events and links are empty: group calls are stored on the
// members, who link to their accounts. The metadata carries the profile's
// version, which a rectification's receipt names, and its consent.
// Fields of Segment's answers the library has no value for are left out:
// the source_id of an identifier or a link, the first and last message's
// source in the metadata, and an event's external_ids and related (it is
// read through its profile). Errors take Segment's {"error": {"code",
// "message"}}: not_found (404,
// for an erased or unknown person too), validation_error (400),
// authentication_error (401).
//
// Requests authenticate as Segment's: HTTP Basic with an access token
// given by WithAccessToken as the user name. Without one every request is
// refused. The answers hold personal data: serve them over TLS only.
func NewProfiles(c *privacy.Controller, opts ...Option) http.Handler {
	if c == nil {
		panic("segmentapi: NewProfiles: nil Controller")
	}
	p := &profiles{c: c, cfg: newConfig(opts)}
	mux := http.NewServeMux()
	const base = "GET /v1/spaces/{space_id}/collections/{collection}/profiles/{external_id}/"
	mux.Handle(base+"traits", p.auth(p.traits))
	mux.Handle(base+"events", p.auth(p.events))
	mux.Handle(base+"external_ids", p.auth(p.externalIDs))
	mux.Handle(base+"links", p.auth(p.links))
	mux.Handle(base+"metadata", p.auth(p.metadata))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		profileError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	return mux
}

type profiles struct {
	c   *privacy.Controller
	cfg *config
}

// subject is the profile a Profile API path names.
type subject struct {
	account bool        // the accounts collection
	groupID string      // an account's group id
	id      identity.ID // a user's identifier
}

type profileErrorBody struct {
	Error profileErrorDetail `json:"error"`
}

type profileErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func profileError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, profileErrorBody{Error: profileErrorDetail{Code: code, Message: message}})
}

// cursor is Segment's paging object: url is the request's path.
type cursor struct {
	URL     string `json:"url"`
	HasMore bool   `json:"has_more"`
	Next    string `json:"next"`
}

func pageCursor(r *http.Request, next string) cursor {
	return cursor{URL: r.URL.EscapedPath(), HasMore: next != "", Next: next}
}

// auth checks r's access token and the path's space and collection, and
// runs next with the profile it names.
func (p *profiles) auth(next func(http.ResponseWriter, *http.Request, subject)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !p.cfg.tokenOK(basicUser(r)) {
			w.Header().Set("WWW-Authenticate", `Basic realm="Segment Profile API"`)
			profileError(w, http.StatusUnauthorized, "authentication_error", "a valid access token is required as the HTTP Basic user name")
			return
		}
		if p.cfg.space != "" && r.PathValue("space_id") != p.cfg.space {
			profileError(w, http.StatusNotFound, "not_found", "no such space")
			return
		}
		var s subject
		switch r.PathValue("collection") {
		case "users":
		case "accounts":
			s.account = true
		default:
			profileError(w, http.StatusNotFound, "not_found", "no such collection: want users or accounts")
			return
		}
		id, err := identity.ParseID(r.PathValue("external_id"))
		if err != nil {
			profileError(w, http.StatusBadRequest, "validation_error", "external_id: want type:value, such as user_id:42")
			return
		}
		if s.account {
			if id.Type != privacy.TypeGroupID {
				profileError(w, http.StatusBadRequest, "validation_error", "external_id: an account is named by group_id:{groupId}")
				return
			}
			s.groupID = id.Value
		}
		s.id = id
		next(w, r, s)
	})
}

// readFailed answers an error of the Controller's reads.
func (p *profiles) readFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, privacy.ErrNotFound):
		profileError(w, http.StatusNotFound, "not_found", "Profile was not found.")
	case errors.Is(err, privacy.ErrInvalid):
		profileError(w, http.StatusBadRequest, "validation_error", "the query is not valid: "+safeInvalid(err))
	case errors.Is(err, privacy.ErrClosed):
		profileError(w, http.StatusServiceUnavailable, "unavailable", "the service is shutting down")
	default:
		p.cfg.logFailure(r, "profile read", err)
		profileError(w, http.StatusInternalServerError, "server_error", "the profile could not be read")
	}
}

// safeInvalid is the part of an invalid query's error that names the
// parameter: the Controller's query errors name limits and cursors, never
// a person's data, but the text is cut to its known forms all the same.
func safeInvalid(err error) string {
	msg := err.Error()
	for _, known := range []string{"limit", "cursor", "sort", "include", "exclude", "start", "end"} {
		if strings.Contains(msg, known) {
			return known
		}
	}
	return "a parameter"
}

// query is the parsed query string, failing on the first bad parameter.
type query struct {
	v   url.Values
	err string
}

func newQuery(r *http.Request) *query { return &query{v: r.URL.Query()} }

func (q *query) fail(param, why string) {
	if q.err == "" {
		q.err = param + ": " + why
	}
}

func (q *query) list(param string) []string {
	s := q.v.Get(param)
	if s == "" {
		return nil
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func (q *query) limit(most int) int {
	s := q.v.Get("limit")
	if s == "" {
		return DefaultProfileLimit
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > most {
		q.fail("limit", "want an integer from 1 to "+strconv.Itoa(most))
		return 0
	}
	return n
}

func (q *query) boolean(param string) bool {
	s := q.v.Get(param)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		q.fail(param, "want true or false")
	}
	return b
}

func (q *query) time(param string) time.Time {
	s := q.v.Get(param)
	if s == "" {
		return time.Time{}
	}
	var t wireTime
	if err := t.UnmarshalJSON(strconv.AppendQuote(nil, s)); err != nil {
		q.fail(param, "want an ISO 8601 date and time")
	}
	return time.Time(t)
}

// ok answers a bad parameter and reports whether there was none.
func (q *query) ok(w http.ResponseWriter) bool {
	if q.err != "" {
		profileError(w, http.StatusBadRequest, "validation_error", q.err)
		return false
	}
	return true
}

type traitsAnswer struct {
	Traits map[string]any `json:"traits"`
	Cursor cursor         `json:"cursor"`
}

// verboseTrait is a trait with its provenance, as verbose=true lists it.
type verboseTrait struct {
	Value     any       `json:"value"`
	SourceID  string    `json:"source_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

func (p *profiles) traits(w http.ResponseWriter, r *http.Request, s subject) {
	q := newQuery(r)
	tq := profile.TraitQuery{Include: q.list("include"), Limit: q.limit(MaxTraitsLimit), Verbose: q.boolean("verbose"), Cursor: q.v.Get("next")}
	class := q.v.Get("class")
	switch class {
	case "", "audience", "computed_trait":
	default:
		q.fail("class", "want audience or computed_trait")
	}
	if !q.ok(w) {
		return
	}
	traits, err := p.traitsOf(r, s, class)
	if err != nil {
		p.readFailed(w, r, err)
		return
	}
	page, err := profile.SelectTraits(traits, tq)
	if err != nil {
		p.readFailed(w, r, err)
		return
	}
	out := make(map[string]any, len(page.Traits))
	for k, t := range page.Traits {
		if tq.Verbose {
			out[k] = verboseTrait{Value: t.Value, SourceID: t.Source, UpdatedAt: t.UpdatedAt}
		} else {
			out[k] = t.Value
		}
	}
	writeJSON(w, http.StatusOK, traitsAnswer{Traits: out, Cursor: pageCursor(r, page.Next)})
}

// traitsOf returns the traits of s of the class: without one, the
// person's own and the audiences they are in (each a true trait, as
// Segment lists audiences; a trait of the same name wins); "audience",
// the audiences only; "computed_trait", none: the library computes no
// traits.
func (p *profiles) traitsOf(r *http.Request, s subject, class string) (map[string]profile.Trait, error) {
	prof, err := p.profileOf(r, s)
	if err != nil {
		return nil, err
	}
	traits := map[string]profile.Trait{}
	if class == "" {
		traits = prof.Traits
	}
	if class == "computed_trait" || s.account {
		return traits, nil
	}
	keys, err := p.c.Audiences(r.Context(), s.id)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return traits, nil
	}
	out := make(map[string]profile.Trait, len(traits)+len(keys))
	for _, k := range keys {
		out[k] = profile.Trait{Value: true, Source: "audience"}
	}
	for k, t := range traits {
		out[k] = t
	}
	return out, nil
}

func (p *profiles) profileOf(r *http.Request, s subject) (*profile.Profile, error) {
	if s.account {
		return p.c.Account(r.Context(), s.groupID)
	}
	return p.c.Profile(r.Context(), s.id)
}

type dataAnswer[T any] struct {
	Data   []T    `json:"data"`
	Cursor cursor `json:"cursor"`
}

// wireEvent is an event as the Profile API lists it.
type wireEvent struct {
	Type       string         `json:"type"`
	MessageID  string         `json:"message_id"`
	SourceID   string         `json:"source_id,omitempty"`
	Event      string         `json:"event,omitempty"`
	Name       string         `json:"name,omitempty"`
	Properties map[string]any `json:"properties"`
	Context    map[string]any `json:"context,omitempty"`
	Timestamp  time.Time      `json:"timestamp"`
	ReceivedAt time.Time      `json:"received_at,omitzero"`
}

func (p *profiles) events(w http.ResponseWriter, r *http.Request, s subject) {
	q := newQuery(r)
	eq := profile.EventQuery{Start: q.time("start"), End: q.time("end"), Include: q.list("include"), Exclude: q.list("exclude"),
		Limit: q.limit(MaxProfileLimit), Cursor: q.v.Get("next")}
	switch sort := q.v.Get("sort"); sort {
	case "":
	case "asc", "desc":
		eq.Sort = profile.Order(sort)
	default:
		q.fail("sort", "want asc or desc")
	}
	if !q.ok(w) {
		return
	}
	if s.account {
		// An account's events are its members': group calls are stored on
		// the person who made them.
		if _, err := p.c.Account(r.Context(), s.groupID); err != nil {
			p.readFailed(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, dataAnswer[wireEvent]{Data: []wireEvent{}, Cursor: pageCursor(r, "")})
		return
	}
	page, err := p.c.Events(r.Context(), s.id, eq)
	if err != nil {
		p.readFailed(w, r, err)
		return
	}
	out := make([]wireEvent, 0, len(page.Events))
	for i := range page.Events {
		e := &page.Events[i]
		we := wireEvent{Type: e.Type, MessageID: e.MessageID, SourceID: e.Source, Properties: e.Properties,
			Context: e.Context, Timestamp: e.Timestamp, ReceivedAt: e.ReceivedAt}
		if we.Type == "" {
			we.Type = "track"
		}
		if we.Type == "track" {
			we.Event = e.Name
		} else {
			we.Name = e.Name
		}
		if we.Properties == nil {
			we.Properties = map[string]any{}
		}
		out = append(out, we)
	}
	writeJSON(w, http.StatusOK, dataAnswer[wireEvent]{Data: out, Cursor: pageCursor(r, page.Next)})
}

// wireExternalID is an identifier as the Profile API lists it.
type wireExternalID struct {
	ID             string    `json:"id"`
	Type           string    `json:"type"`
	Collection     string    `json:"collection"`
	Encoding       string    `json:"encoding"`
	CreatedAt      time.Time `json:"created_at,omitzero"`
	FirstMessageID string    `json:"first_message_id,omitempty"`
}

func (p *profiles) externalIDs(w http.ResponseWriter, r *http.Request, s subject) {
	q := newQuery(r)
	xq := profile.ExternalIDQuery{Include: q.list("include"), Limit: q.limit(MaxProfileLimit), Cursor: q.v.Get("next")}
	if !q.ok(w) {
		return
	}
	var page profile.ExternalIDPage
	var err error
	collection := "users"
	if s.account {
		collection = "accounts"
		var acct *profile.Profile
		if acct, err = p.c.Account(r.Context(), s.groupID); err == nil {
			page, err = profile.SelectExternalIDs(acct.ExternalIDs, xq)
		}
	} else {
		page, err = p.c.ExternalIDs(r.Context(), s.id, xq)
	}
	if err != nil {
		p.readFailed(w, r, err)
		return
	}
	out := make([]wireExternalID, 0, len(page.ExternalIDs))
	for _, x := range page.ExternalIDs {
		out = append(out, wireExternalID{ID: x.ID.Value, Type: x.ID.Type, Collection: collection, Encoding: "none",
			CreatedAt: x.CreatedAt, FirstMessageID: x.FirstMessageID})
	}
	writeJSON(w, http.StatusOK, dataAnswer[wireExternalID]{Data: out, Cursor: pageCursor(r, page.Next)})
}

// linksAnswer is the links endpoint's answer: unpaged, as Segment's.
type linksAnswer struct {
	Data []wireLink `json:"data"`
}

// wireLink is a profile's links to another collection.
type wireLink struct {
	ToCollection string           `json:"to_collection"`
	ExternalIDs  []wireExternalID `json:"external_ids"`
}

func (p *profiles) links(w http.ResponseWriter, r *http.Request, s subject) {
	if !newQuery(r).ok(w) {
		return
	}
	if s.account {
		// The links are kept on the members only: an account lists none.
		if _, err := p.c.Account(r.Context(), s.groupID); err != nil {
			p.readFailed(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, linksAnswer{Data: []wireLink{}})
		return
	}
	md, err := p.c.Metadata(r.Context(), s.id)
	if err != nil {
		p.readFailed(w, r, err)
		return
	}
	data := []wireLink{}
	if len(md.Accounts) > 0 {
		link := wireLink{ToCollection: "accounts"}
		for _, a := range md.Accounts {
			link.ExternalIDs = append(link.ExternalIDs, wireExternalID{ID: a.GroupID, Type: privacy.TypeGroupID,
				Collection: "accounts", Encoding: "none", CreatedAt: a.FirstLinked})
		}
		data = append(data, link)
	}
	writeJSON(w, http.StatusOK, linksAnswer{Data: data})
}

// wireMetadata is the metadata endpoint's answer; Version (the profile's
// version, which a rectification's receipt names) is this library's.
type wireMetadata struct {
	CreatedAt      time.Time      `json:"created_at,omitzero"`
	UpdatedAt      time.Time      `json:"updated_at,omitzero"`
	ExpiresAt      *time.Time     `json:"expires_at"`
	FirstMessageID string         `json:"first_message_id,omitempty"`
	LastMessageID  string         `json:"last_message_id,omitempty"`
	FirstSeen      time.Time      `json:"first_seen,omitzero"`
	LastSeen       time.Time      `json:"last_seen,omitzero"`
	Version        uint64         `json:"version"`
	Consent        map[string]any `json:"consent,omitempty"`
}

func (p *profiles) metadata(w http.ResponseWriter, r *http.Request, s subject) {
	if !newQuery(r).ok(w) {
		return
	}
	var md profile.Metadata
	if s.account {
		acct, err := p.c.Account(r.Context(), s.groupID)
		if err != nil {
			p.readFailed(w, r, err)
			return
		}
		md = acct.Metadata
	} else {
		var err error
		if md, err = p.c.Metadata(r.Context(), s.id); err != nil {
			p.readFailed(w, r, err)
			return
		}
	}
	out := wireMetadata{CreatedAt: md.CreatedAt, UpdatedAt: md.UpdatedAt, FirstMessageID: md.FirstMessageID,
		LastMessageID: md.LastMessageID, FirstSeen: md.FirstSeen, LastSeen: md.LastSeen, Version: md.Version}
	if md.Consent.Len() > 0 {
		out.Consent = map[string]any{"categoryPreferences": consentValues(md.Consent)}
	}
	writeJSON(w, http.StatusOK, map[string]wireMetadata{"metadata": out})
}

// consentValues is the person's consent as Segment's consent object
// writes it: true or false per category, "conflict" where merged profiles
// disagreed.
func consentValues(c profile.Consent) map[string]any {
	cats := c.Categories()
	out := make(map[string]any, len(cats))
	for k, st := range cats {
		switch st {
		case profile.ConsentGranted:
			out[k] = true
		case profile.ConsentDenied:
			out[k] = false
		default:
			out[k] = st.String()
		}
	}
	return out
}
