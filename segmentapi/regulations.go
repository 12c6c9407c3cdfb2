package segmentapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Bounds of the Regulations API.
const (
	// MaxRegulationBytes bounds a create request's body: 5,000 subject ids
	// (privacy.MaxSubjects) with room to spare.
	MaxRegulationBytes = 1 << 20
	// DefaultPageCount is the page size of the lists when pagination.count
	// is not given, as in Segment's Public API.
	DefaultPageCount = 200
	// MaxPageCount is the largest pagination.count.
	MaxPageCount = 1000
	// RegulationTimeout bounds the work of creating (or extending) a
	// regulation, which goes on when the client hangs up: a request
	// received is carried out.
	RegulationTimeout = 2 * time.Minute
)

// publicAPIType is the media type of Segment's Public API answers.
const publicAPIType = "application/vnd.segment.v1+json"

// NewRegulations returns the deletion and suppression endpoints of
// Segment's Public API over c, with its request and answer shapes:
//
//	POST /regulations                  create: {regulationType, subjectType, subjectIds}
//	GET  /regulations/{regulateId}     one regulation: overallStatus, per-destination status, times
//	GET  /regulations                  list: status, regulationTypes, pagination.count, pagination.cursor
//	GET  /suppressions                 the suppressions in effect (keyed hashes: see below)
//
// regulationType is any privacy.RequestType; subjectType is USER_ID, as in
// Segment, or (this library's) ANONYMOUS_ID, EMAIL, or EXTERNAL_ID with
// subject ids written type:value. Segment's per-source and cloud-source
// regulations are answered 501: though events and traits note the source
// that sent them, a person here is one profile, one set of identifiers
// and one suppression whatever the source, so a regulation acts on every
// source at once. DELETE /regulations/{regulateId}, which in Segment
// withdraws a regulation not yet started, answers 422: here a regulation
// is carried out as it is received, and one INITIALIZED (its host stopped
// before deciding it) is finished by recovery, not withdrawn.
//
// Extensions in the same style: RECTIFY takes "traits" (a null value
// removes one); ACCESS takes "format" (json, ndjson or csv; json by
// default) and answers with the export itself as a download, the request's
// id in its header record; a regulation shows its "regulationType",
// "dueAt" (Art. 12(3)), "extensionReason", "profileVersion" (RECTIFY: the
// version the Profile API's metadata shows once processed) and
// "backendStatus" beside Segment's fields; and
// POST /regulations/extensions/{regulateId} {months, reason} extends its due
// date (privacy.Controller.Extend).
//
// GET /suppressions lists, per suppressing regulation in effect, newest
// first, what it keeps suppressed (privacy.Controller.StillSuppressed), as
// keyed hashes (subjectType KEYED_HASH): the library keeps no suppressed
// identifier in clear. Each identifier is listed once, under the latest
// regulation that suppressed it; a page may hold fewer entries than its
// count, as regulations no longer in effect are left out.
//
// A regulation received is carried out even when the client hangs up or
// times out before the answer (within RegulationTimeout): it reads the
// outcome with GET /regulations, as after any lost answer. Reads and ACCESS
// downloads stop with the client.
//
// Requests authenticate with "Authorization: Bearer {token}", a token given
// by WithAccessToken; without one every request is refused. Errors take
// the Public API's {"errors": [{type, message, field}]}: 401, 404, 413,
// 422 for input that is not valid (which changes nothing), 503 when a
// backend fails (logged by class only).
func NewRegulations(c *privacy.Controller, opts ...Option) http.Handler {
	if c == nil {
		panic("segmentapi: NewRegulations: nil Controller")
	}
	g := &regulations{c: c, cfg: newConfig(opts)}
	mux := http.NewServeMux()
	mux.Handle("POST /regulations", g.auth(g.create))
	mux.Handle("GET /regulations", g.auth(g.list))
	mux.Handle("GET /regulations/{regulateId}", g.auth(g.get))
	mux.Handle("POST /regulations/extensions/{regulateId}", g.auth(g.extend))
	mux.Handle("DELETE /regulations/{regulateId}", g.auth(g.withdraw))
	mux.Handle("GET /suppressions", g.auth(g.suppressions))
	notSupported := g.auth(func(w http.ResponseWriter, r *http.Request) {
		publicError(w, http.StatusNotImplemented, "not-supported", "", "regulations are not scoped to a source here: a person is one profile whatever the source, and POST /regulations acts on every source")
	})
	for _, p := range []string{"/regulations/sources/{sourceId}", "/regulations/cloudsources/{sourceId}"} {
		mux.Handle("POST "+p, notSupported)
		mux.Handle("GET "+p, notSupported)
	}
	mux.Handle("/", g.auth(func(w http.ResponseWriter, r *http.Request) {
		publicError(w, http.StatusNotFound, "not-found", "", "no such endpoint")
	}))
	return mux
}

type regulations struct {
	c   *privacy.Controller
	cfg *config
}

// publicErrors is the Public API's error envelope.
type publicErrors struct {
	Errors []publicIssue `json:"errors"`
}

type publicIssue struct {
	Type    string `json:"type"`
	Message string `json:"message,omitempty"`
	Field   string `json:"field,omitempty"`
}

func publicError(w http.ResponseWriter, status int, typ, field, message string) {
	writePublic(w, status, publicErrors{Errors: []publicIssue{{Type: typ, Message: message, Field: field}}})
}

// writePublic answers with the Public API's media type.
func writePublic(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", publicAPIType)
	writeJSONAs(w, status, v)
}

func writeData(w http.ResponseWriter, v any) {
	writePublic(w, http.StatusOK, map[string]any{"data": v})
}

func (g *regulations) auth(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !g.cfg.tokenOK(strings.TrimSpace(token)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="Segment Public API"`)
			publicError(w, http.StatusUnauthorized, "unauthorized", "", "a valid access token is required: Authorization: Bearer {token}")
			return
		}
		next(w, r)
	})
}

// failed answers an error of the Controller.
func (g *regulations) failed(w http.ResponseWriter, r *http.Request, what string, err error) {
	var fe *privacy.FieldError
	switch {
	case errors.As(err, &fe):
		publicError(w, http.StatusUnprocessableEntity, "input-validation", fe.Field, fe.Error())
	case errors.Is(err, privacy.ErrInvalid):
		publicError(w, http.StatusUnprocessableEntity, "input-validation", "", "the request is not valid")
	case errors.Is(err, privacy.ErrNotFound):
		publicError(w, http.StatusNotFound, "not-found", "", "not found")
	case errors.Is(err, privacy.ErrClosed):
		publicError(w, http.StatusServiceUnavailable, "unavailable", "", "the service is shutting down")
	default:
		g.cfg.logFailure(r, what, err)
		publicError(w, http.StatusServiceUnavailable, "server-error", "", "the request could not be completed: try again later")
	}
}

// createBody is a create request. Traits (RECTIFY) and Format (ACCESS) are
// this library's.
type createBody struct {
	RegulationType string         `json:"regulationType"`
	SubjectType    string         `json:"subjectType"`
	SubjectIDs     []string       `json:"subjectIds"`
	Traits         map[string]any `json:"traits"`
	Format         string         `json:"format"`
}

// subjectTypes maps the subject types taken to identifier types.
var subjectTypes = map[string]string{"USER_ID": "user_id", "ANONYMOUS_ID": "anonymous_id", "EMAIL": "email"}

func (b *createBody) request() (privacy.Request, export.Format, *publicIssue) {
	req := privacy.Request{Type: privacy.RequestType(b.RegulationType), Traits: b.Traits}
	if b.RegulationType == "" {
		return req, 0, &publicIssue{Type: "input-validation", Field: "regulationType", Message: "regulationType is required"}
	}
	if !req.Type.Valid() {
		return req, 0, &publicIssue{Type: "input-validation", Field: "regulationType", Message: "unknown regulationType"}
	}
	if len(b.SubjectIDs) == 0 {
		return req, 0, &publicIssue{Type: "input-validation", Field: "subjectIds", Message: "subjectIds is required"}
	}
	if len(b.SubjectIDs) > privacy.MaxSubjects {
		return req, 0, &publicIssue{Type: "input-validation", Field: "subjectIds", Message: "more than " + strconv.Itoa(privacy.MaxSubjects) + " subjectIds"}
	}
	typ, ok := subjectTypes[b.SubjectType]
	if !ok && b.SubjectType != "EXTERNAL_ID" {
		return req, 0, &publicIssue{Type: "input-validation", Field: "subjectType", Message: "subjectType: want USER_ID, ANONYMOUS_ID, EMAIL or EXTERNAL_ID"}
	}
	for i, s := range b.SubjectIDs {
		var id identity.ID
		var err error
		if typ != "" {
			id, err = identity.NewID(typ, s)
		} else {
			id, err = identity.ParseID(s)
		}
		if err != nil {
			return req, 0, &publicIssue{Type: "input-validation", Field: "subjectIds[" + strconv.Itoa(i) + "]", Message: "not a valid identifier of the subjectType"}
		}
		req.Subjects = append(req.Subjects, id)
	}
	var format export.Format
	switch {
	case req.Type == privacy.Access:
		f := b.Format
		if f == "" {
			f = "json"
		}
		var err error
		if format, err = export.ParseFormat(f); err != nil {
			return req, 0, &publicIssue{Type: "input-validation", Field: "format", Message: "format: want json, ndjson or csv"}
		}
		if len(req.Subjects) != 1 {
			return req, 0, &publicIssue{Type: "input-validation", Field: "subjectIds", Message: "an ACCESS regulation names one subject"}
		}
	case b.Format != "":
		return req, 0, &publicIssue{Type: "input-validation", Field: "format", Message: "format is for ACCESS regulations only"}
	}
	if b.Traits != nil && req.Type != privacy.Rectify {
		return req, 0, &publicIssue{Type: "input-validation", Field: "traits", Message: "traits are for RECTIFY regulations only"}
	}
	return req, format, nil
}

func (g *regulations) create(w http.ResponseWriter, r *http.Request) {
	raw, err := readBody(w, r, MaxRegulationBytes)
	if err != nil {
		switch {
		case errors.Is(err, errTooLarge):
			publicError(w, http.StatusRequestEntityTooLarge, "payload-too-large", "", "the body is larger than "+strconv.Itoa(MaxRegulationBytes>>20)+" MB")
		case errors.Is(err, errEncoding):
			publicError(w, http.StatusUnsupportedMediaType, "unsupported-encoding", "", "unsupported Content-Encoding: want gzip or none")
		default:
			publicError(w, http.StatusUnprocessableEntity, "input-validation", "", "the body could not be read")
		}
		return
	}
	var b createBody
	numbers, err := profile.UnmarshalNumbers(raw, &b)
	if err == nil && numbers {
		err = profile.ExactMaps(&b.Traits)
	}
	if err != nil {
		je := jsonError(err)
		publicError(w, http.StatusUnprocessableEntity, "input-validation", je.Field, je.Error())
		return
	}
	req, format, issue := b.request()
	if issue != nil {
		writePublic(w, http.StatusUnprocessableEntity, publicErrors{Errors: []publicIssue{*issue}})
		return
	}
	if req.Type == privacy.Access {
		g.access(w, r, req.Subjects[0], format)
		return
	}
	// Detached from the client: a request received is carried out even when
	// the client hangs up or times out (it reads the outcome with GET, as it
	// would after any lost answer); cancelled half way, it would be recorded
	// FAILED and never run. Bounded all the same.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), RegulationTimeout)
	defer cancel()
	receipt, err := g.c.Apply(ctx, req)
	if receipt == nil || errors.Is(err, privacy.ErrInvalid) {
		if err == nil {
			err = errors.New("no receipt")
		}
		g.failed(w, r, "create regulation", err)
		return
	}
	// A receipt is a regulation, whatever its status: a failed one is read
	// back as FAILED, as Segment shows one.
	writeData(w, map[string]string{"regulateId": receipt.ID})
}

// access streams the export of the person known by id as the answer.
func (g *regulations) access(w http.ResponseWriter, r *http.Request, id identity.ID, f export.Format) {
	dw := &downloadWriter{w: w, format: f}
	_, err := g.c.Export(r.Context(), id, dw, f)
	if err == nil {
		if !dw.started {
			dw.start()
		}
		return
	}
	if !dw.started {
		g.failed(w, r, "access", err)
		return
	}
	// Cut short: break the connection so that the client sees a truncated
	// download rather than a complete one (a JSON or CSV export cut short
	// may still parse).
	g.cfg.logFailure(r, "access", err)
	panic(http.ErrAbortHandler)
}

// downloadWriter sets the download's headers on its first write, so that
// an export failing before it writes (an unknown person) still gets an
// error answer.
type downloadWriter struct {
	w       http.ResponseWriter
	format  export.Format
	started bool
}

func (d *downloadWriter) start() {
	d.started = true
	h := d.w.Header()
	h.Set("Content-Type", d.format.ContentType())
	h.Set("Content-Disposition", `attachment; filename="access.`+extension(d.format)+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	d.w.WriteHeader(http.StatusOK)
}

func (d *downloadWriter) Write(p []byte) (int, error) {
	if !d.started {
		d.start()
	}
	return d.w.Write(p)
}

func extension(f export.Format) string {
	switch f {
	case export.NDJSON:
		return "ndjson"
	case export.CSV:
		return "zip"
	}
	return "json"
}

// wireRegulation is a regulation as GET /regulations/{regulateId} shows it.
type wireRegulation struct {
	ID             string              `json:"id"`
	WorkspaceID    string              `json:"workspaceId"`
	OverallStatus  string              `json:"overallStatus"`
	CreatedAt      string              `json:"createdAt"`
	FinishedAt     string              `json:"finishedAt,omitempty"`
	StreamStatus   []wireStream        `json:"streamStatus"`
	RegulationType string              `json:"regulationType"`
	DueAt          string              `json:"dueAt"`
	Extension      string              `json:"extensionReason,omitempty"`
	ProfileVersion uint64              `json:"profileVersion,omitempty"`
	BackendStatus  []wireOutcomeStatus `json:"backendStatus"`
}

type wireStream struct {
	ID                string              `json:"id"`
	DestinationStatus []wireOutcomeStatus `json:"destinationStatus"`
}

type wireOutcomeStatus struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	Status     string `json:"status"`
	ErrString  string `json:"errString"`
	FinishedAt string `json:"finishedAt"`
}

// workspace is the one workspace and stream a Controller is.
const workspace = "workspace"

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func outcomes(os []privacy.Outcome) []wireOutcomeStatus {
	out := make([]wireOutcomeStatus, 0, len(os))
	for _, o := range os {
		out = append(out, wireOutcomeStatus{Name: o.Name, ID: o.Name, Status: string(o.Status), ErrString: o.Err, FinishedAt: stamp(o.Finished)})
	}
	return out
}

func regulationOf(rc *privacy.Receipt) wireRegulation {
	return wireRegulation{ID: rc.ID, WorkspaceID: workspace, OverallStatus: string(rc.Status), CreatedAt: stamp(rc.Received),
		FinishedAt: stamp(rc.Finished), StreamStatus: []wireStream{{ID: workspace, DestinationStatus: outcomes(rc.Destinations)}},
		RegulationType: string(rc.Type), DueAt: stamp(rc.Due), Extension: rc.ExtensionReason, ProfileVersion: rc.ProfileVersion,
		BackendStatus: outcomes(rc.Backends)}
}

func (g *regulations) get(w http.ResponseWriter, r *http.Request) {
	rc, err := g.c.Status(r.Context(), r.PathValue("regulateId"))
	if err == nil && rc.Type == privacy.Retention {
		err = fmt.Errorf("%w: a retention run is no regulation", privacy.ErrNotFound)
	}
	if err != nil {
		g.failed(w, r, "get regulation", err)
		return
	}
	writeData(w, map[string]any{"regulation": regulationOf(rc)})
}

// withdraw answers Segment's Delete Regulation: 404 for no such
// regulation, else 422, since none waits here to be started (see
// NewRegulations).
func (g *regulations) withdraw(w http.ResponseWriter, r *http.Request) {
	rc, err := g.c.Status(r.Context(), r.PathValue("regulateId"))
	if err == nil && rc.Type == privacy.Retention {
		err = fmt.Errorf("%w: a retention run is no regulation", privacy.ErrNotFound)
	}
	if err != nil {
		g.failed(w, r, "delete regulation", err)
		return
	}
	publicError(w, http.StatusUnprocessableEntity, "validation-error", "regulateId",
		"a regulation is carried out as it is received here, and cannot be withdrawn (its status is "+string(rc.Status)+")")
}

type extensionBody struct {
	Months int    `json:"months"`
	Reason string `json:"reason"`
}

func (g *regulations) extend(w http.ResponseWriter, r *http.Request) {
	raw, err := readBody(w, r, 16<<10)
	if err != nil {
		publicError(w, http.StatusUnprocessableEntity, "input-validation", "", "the body could not be read")
		return
	}
	var b extensionBody
	if err := json.Unmarshal(raw, &b); err != nil {
		je := jsonError(err)
		publicError(w, http.StatusUnprocessableEntity, "input-validation", je.Field, je.Error())
		return
	}
	if rc, err := g.c.Status(r.Context(), r.PathValue("regulateId")); err == nil && rc.Type == privacy.Retention {
		g.failed(w, r, "extend regulation", fmt.Errorf("%w: a retention run is no regulation", privacy.ErrNotFound))
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), RegulationTimeout)
	defer cancel()
	rc, ferr := g.c.Extend(ctx, r.PathValue("regulateId"), b.Months, b.Reason)
	if ferr != nil {
		g.failed(w, r, "extend regulation", ferr)
		return
	}
	writeData(w, map[string]any{"regulation": regulationOf(rc)})
}

// wireListEntry is a regulation as GET /regulations lists it. Subjects are
// keyed hashes: the journal keeps no subject in clear once done.
type wireListEntry struct {
	ID             string   `json:"id"`
	SubjectType    string   `json:"subjectType"`
	Subjects       []string `json:"subjects"`
	Status         string   `json:"status"`
	CreatedAt      string   `json:"createdAt"`
	RegulationType string   `json:"regulationType"`
	FinishedAt     string   `json:"finishedAt,omitempty"`
}

// pagination is the Public API's paging answer.
type pagination struct {
	Current string  `json:"current"`
	Next    *string `json:"next,omitempty"`
}

// pageParams reads pagination.count and pagination.cursor, in the dotted
// form Segment documents and the bracketed form its SDKs send.
func pageParams(r *http.Request) (count int, cursor string, issue *publicIssue) {
	q := r.URL.Query()
	get := func(name string) string {
		if v := q.Get("pagination." + name); v != "" {
			return v
		}
		return q.Get("pagination[" + name + "]")
	}
	count = DefaultPageCount
	if s := get("count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageCount {
			return 0, "", &publicIssue{Type: "input-validation", Field: "pagination.count", Message: "want an integer from 1 to " + strconv.Itoa(MaxPageCount)}
		}
		count = n
	}
	return count, get("cursor"), nil
}

// listParam returns the values of a list parameter given as name=a,b,
// repeated, or as name.0=a (Segment's Go SDK) or name[0]=a.
func listParam(r *http.Request, name string) []string {
	var out []string
	for k, vs := range r.URL.Query() {
		if k != name && !strings.HasPrefix(k, name+".") && !strings.HasPrefix(k, name+"[") {
			continue
		}
		for _, v := range vs {
			for _, part := range strings.Split(v, ",") {
				if part = strings.TrimSpace(part); part != "" {
					out = append(out, part)
				}
			}
		}
	}
	return out
}

func (g *regulations) list(w http.ResponseWriter, r *http.Request) {
	count, cur, issue := pageParams(r)
	if issue != nil {
		writePublic(w, http.StatusUnprocessableEntity, publicErrors{Errors: []publicIssue{*issue}})
		return
	}
	f := privacy.RequestFilter{Limit: count, Cursor: cur}
	for _, s := range listParam(r, "status") {
		st := privacy.Status(s)
		if !knownStatus(st) {
			publicError(w, http.StatusUnprocessableEntity, "input-validation", "status", "unknown status")
			return
		}
		f.Statuses = append(f.Statuses, st)
	}
	for _, s := range listParam(r, "regulationTypes") {
		t := privacy.RequestType(s)
		if !t.Valid() {
			publicError(w, http.StatusUnprocessableEntity, "input-validation", "regulationTypes", "unknown regulationType")
			return
		}
		f.Types = append(f.Types, t)
	}
	if len(f.Types) == 0 {
		f.Types = regulationTypes // not the retention runs journaled beside them
	}
	page, err := g.c.Requests(r.Context(), f)
	if err != nil {
		g.failed(w, r, "list regulations", err)
		return
	}
	entries := make([]wireListEntry, 0, len(page.Receipts))
	for _, rc := range page.Receipts {
		subjects := make([]string, 0, len(rc.Subjects))
		for _, h := range rc.Subjects {
			subjects = append(subjects, h.String())
		}
		entries = append(entries, wireListEntry{ID: rc.ID, SubjectType: "KEYED_HASH", Subjects: subjects, Status: string(rc.Status),
			CreatedAt: stamp(rc.Received), RegulationType: string(rc.Type), FinishedAt: stamp(rc.Finished)})
	}
	writeData(w, map[string]any{"regulations": entries, "pagination": pageOf(cur, page.Next)})
}

func pageOf(current, next string) pagination {
	p := pagination{Current: current}
	if next != "" {
		p.Next = &next
	}
	return p
}

// regulationTypes are the types of the requests GET /regulations lists:
// every one a regulation can be made with, and UNKNOWN (those refused as
// INVALID for their type).
var regulationTypes = []privacy.RequestType{privacy.SuppressOnly, privacy.Unsuppress, privacy.SuppressWithDelete,
	privacy.SuppressWithDeleteInternal, privacy.DeleteOnly, privacy.DeleteInternal, privacy.Rectify, privacy.Access, privacy.UnknownType}

var statuses = []privacy.Status{privacy.Initialized, privacy.Running, privacy.Finished, privacy.PartialSuccess,
	privacy.Failed, privacy.Invalid, privacy.NotSupported}

func knownStatus(s privacy.Status) bool {
	for _, k := range statuses {
		if k == s {
			return true
		}
	}
	return false
}

// wireSuppressed is one entry of GET /suppressions.
type wireSuppressed struct {
	SubjectType string   `json:"subjectType"`
	SubjectIDs  []string `json:"subjectIds"`
	RegulateID  string   `json:"regulateId"`
}

func (g *regulations) suppressions(w http.ResponseWriter, r *http.Request) {
	count, cur, issue := pageParams(r)
	if issue != nil {
		writePublic(w, http.StatusUnprocessableEntity, publicErrors{Errors: []publicIssue{*issue}})
		return
	}
	page, err := g.c.Requests(r.Context(), privacy.RequestFilter{Limit: count, Cursor: cur,
		Types: []privacy.RequestType{privacy.SuppressOnly, privacy.SuppressWithDelete, privacy.SuppressWithDeleteInternal}})
	if err != nil {
		g.failed(w, r, "list suppressions", err)
		return
	}
	out := []wireSuppressed{}
	for _, rc := range page.Receipts {
		hs, err := g.c.StillSuppressed(r.Context(), rc.ID)
		if err != nil {
			g.failed(w, r, "list suppressions", err)
			return
		}
		if len(hs) == 0 {
			continue
		}
		e := wireSuppressed{SubjectType: "KEYED_HASH", RegulateID: rc.ID}
		for _, h := range hs {
			e.SubjectIDs = append(e.SubjectIDs, h.String())
		}
		out = append(out, e)
	}
	writeData(w, map[string]any{"suppressed": out, "pagination": pageOf(cur, page.Next)})
}
