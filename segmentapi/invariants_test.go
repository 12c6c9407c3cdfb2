package segmentapi

// Invariants an adversarial review broke in the first version of this
// package (and of StillSuppressed, alias collection and the external ids
// cursor): each test failed then because of the defect its comment names.

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// downDestination is a destination that is down: every call fails, to be
// retried later.
type downDestination struct{}

func (downDestination) Name() string { return "crm" }
func (downDestination) Send(context.Context, []destination.Message) error {
	return errors.New("connection refused")
}
func (downDestination) Delete(context.Context, destination.Deletion) error {
	return errors.New("connection refused")
}

func listedSuppressions(t *testing.T, a *api) []wireSuppressed {
	t.Helper()
	got := a.regulate(http.MethodGet, "/suppressions", "")
	wantStatus(t, got, http.StatusOK)
	return decodeInto[dataWire[struct {
		Suppressed []wireSuppressed `json:"suppressed"`
	}]](t, got).Data.Suppressed
}

// Invariant: GET /suppressions lists every suppression in effect.
// After privacy.RotateKey the suppression list holds the hashes under the
// new key, but StillSuppressed checks the finished request's hashes, made
// under the old key, without lifting them: liftEntry lifts only while the
// request's subjects are in clear (unfinished), and RotateKey requires every
// request finished. So the listing goes empty while the person is still
// suppressed.
func TestSuppressionsListedAfterKeyRotation(t *testing.T) {
	ctx := context.Background()
	key1 := []byte("the first key, thirty-two bytes!")
	key2 := []byte("the next key, thirty-two bytes!!")
	opts := []privacy.Option{privacy.WithProfiles(profile.NewMemStore()), privacy.WithSuppressions(suppression.NewMemList()),
		privacy.WithJournal(journal.NewMemJournal()), privacy.WithAuditLog(audit.NewMemLog()), privacy.WithOutbox(outbox.NewMemStore())}
	c1, err := privacy.New(append(opts, privacy.WithKey(key1))...)
	if err != nil {
		t.Fatal(err)
	}
	a := newAPIOver(t, c1)
	seed(t, a)
	id := a.create(t, `{"regulationType":"SUPPRESS_ONLY","subjectType":"USER_ID","subjectIds":["ada"]}`)
	before := listedSuppressions(t, a)
	if len(before) != 1 || before[0].RegulateID != id {
		t.Fatalf("before the rotation: %+v", before)
	}
	c1.Close()
	if err := privacy.RotateKey(ctx, key2, append(opts, privacy.WithKey(key1))...); err != nil {
		t.Fatal(err)
	}
	c2, err := privacy.New(append(opts, privacy.WithKey(key2), privacy.WithPreviousKeys(key1))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Collect(ctx, privacy.Track{UserID: "ada", Event: "Back"}); !errors.Is(err, privacy.ErrSuppressed) {
		t.Fatalf("ada after the rotation: %v, want ErrSuppressed", err)
	}
	after := listedSuppressions(t, newAPIOver(t, c2))
	if len(after) != 1 || after[0].RegulateID != id || len(after[0].SubjectIDs) != len(before[0].SubjectIDs) {
		t.Errorf("after the rotation /suppressions lists %+v; ada is still suppressed by %s (before: %+v)", after, id, before)
	}
}

// Invariant: GET /suppressions lists every suppression in effect. A
// SUPPRESS_WITH_DELETE whose deletion is still owed to a destination is
// RUNNING, its suppression already committed (collection is refused), but
// the listing filters on FINISHED/PARTIAL_SUCCESS/FAILED and leaves it out
// for as long as the destination is down.
func TestSuppressionsListARunningSuppression(t *testing.T) {
	a := newAPI(t, privacy.WithDestinations(downDestination{}))
	seed(t, a)
	id := a.create(t, `{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}`)
	if st := a.regulation(t, id).OverallStatus; st != "RUNNING" {
		t.Fatalf("status %s, want RUNNING while the destination is down", st)
	}
	if err := a.c.Collect(context.Background(), privacy.Track{UserID: "ada", Event: "Back"}); !errors.Is(err, privacy.ErrSuppressed) {
		t.Fatalf("ada: %v, want ErrSuppressed (the suppression is in effect)", err)
	}
	if got := listedSuppressions(t, a); len(got) != 1 || got[0].RegulateID != id {
		t.Errorf("/suppressions lists %+v while %s (status %s) keeps ada suppressed", got, id, a.regulation(t, id).OverallStatus)
	}
}

// Invariant (StillSuppressed's doc): a suppression a later UNSUPPRESS lifted
// is not listed. SUPPRESS_ONLY, UNSUPPRESS, SUPPRESS_ONLY again: the first
// regulation was lifted, yet it is listed as in effect, because
// StillSuppressed asks only whether the hash is on the list now.
func TestSuppressionsLeaveOutALiftedRegulation(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	first := a.create(t, `{"regulationType":"SUPPRESS_ONLY","subjectType":"USER_ID","subjectIds":["ada"]}`)
	a.create(t, `{"regulationType":"UNSUPPRESS","subjectType":"USER_ID","subjectIds":["ada"]}`)
	again := a.create(t, `{"regulationType":"SUPPRESS_ONLY","subjectType":"USER_ID","subjectIds":["ada"]}`)
	got := listedSuppressions(t, a)
	for _, s := range got {
		if s.RegulateID == first {
			t.Errorf("/suppressions lists %s, lifted by a later UNSUPPRESS (in effect: %s): %+v", first, again, got)
		}
	}
	hs, err := a.c.StillSuppressed(context.Background(), first)
	if err != nil || len(hs) != 0 {
		t.Errorf("StillSuppressed(%s) = %d hashes, %v; want none: a later UNSUPPRESS lifted it", first, len(hs), err)
	}
}

// Invariant: a regulation the API received is carried out, or refused with
// an answer. create passes the client's context to Apply: a client that
// disconnects (or times out) after sending an erasure leaves a journaled
// SUPPRESS_WITH_DELETE marked FAILED ("context canceled"), final: Recover
// does not redo it, the person is neither erased nor suppressed, and the
// caller never saw the regulateId.
func TestRegulationsCarriedOutWhenTheClientHangsUp(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client hung up
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/regulations",
		strings.NewReader(`{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}`))
	r.Header.Set("Authorization", "Bearer "+testToken)
	serve(a.regulations, r)
	if _, err := a.c.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	page, err := a.c.Requests(context.Background(), privacy.RequestFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range page.Receipts {
		if rc.Status == privacy.Failed {
			t.Errorf("regulation %s is %s after the client hung up (and Recover): it will never be carried out", rc.ID, rc.Status)
		}
	}
	if _, err := a.c.Profile(context.Background(), user("ada")); err == nil {
		t.Errorf("ada is still stored: the erasure received was dropped")
	}
}

// Invariant: bad input costs no more than its size. The messages of a
// batch past MaxBatchMessages are each listed in the answer: a 500 KB body
// of "{}," (a few hundred bytes gzipped) gets an answer of ~16 MB.
func TestTrackingBatchAnswerBounded(t *testing.T) {
	a := newAPI(t)
	body := `{"batch":[` + strings.Repeat(`{},`, (MaxBatchBytes-20)/3) + `{}]}`
	gz := gzipped(t, body)
	r := httptest.NewRequest(http.MethodPost, "/v1/batch", strings.NewReader(string(gz)))
	r.SetBasicAuth(testWriteKey, "")
	r.Header.Set("Content-Encoding", "gzip")
	got := serve(a.tracking, r)
	if len(got.body) > MaxBatchBytes {
		t.Errorf("a %d-byte request (%d gzipped) got a %d-byte answer (status %d)", len(body), len(gz), len(got.body), got.status)
	}
}

// Invariant: a suppressed (and erased) person's data is not stored again.
// An alias from a new user id with previousId = the suppressed user id is
// admitted (admit checks userId/anonymousId/traits only) and stored as an
// event whose properties hold previousId "ada" in clear, after ada was
// erased and suppressed.
func TestTrackingAliasOfSuppressedPersonNotStored(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	a.create(t, `{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}`)
	wantStatus(t, a.post("/v1/alias", testWriteKey, `{"userId":"newcomer","previousId":"ada","messageId":"al-1"}`), http.StatusOK)
	for _, e := range a.events(t, user("newcomer")) {
		if e.Properties["previousId"] == "ada" {
			t.Errorf("the suppressed, erased user id is stored again, in clear: %+v", e)
		}
	}
}

// boomProfiles fails every update that stores an event named "Boom", as a
// backend refusing one message.
type boomProfiles struct{ *profile.MemStore }

func (s boomProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.MemStore.Begin(ctx)
	return boomTx{tx}, err
}

type boomTx struct{ profile.Tx }

func (tx boomTx) Update(ctx context.Context, pid identity.ProfileID, u profile.Update) error {
	if u.Event != nil && u.Event.Name == "Boom" {
		return errors.New("backend down")
	}
	return tx.Tx.Update(ctx, pid, u)
}

// Invariant (NewTracking's doc): a batch answered 503 may be sent again, "the
// stored ones are then repeats, stored once". A message without messageId
// (as curl, the example's own instructions, and the HTTP API allow) gets a
// random id per attempt, so every resend stores it again.
func TestTrackingBatchResentAfter503StoresOnce(t *testing.T) {
	a := newAPI(t, privacy.WithProfiles(boomProfiles{profile.NewMemStore()}))
	batch := `{"batch":[{"type":"track","userId":"u1","event":"Opened"},{"type":"track","userId":"u2","event":"Boom","messageId":"b1"}]}`
	for range 2 { // the client resends on 503, as told
		wantStatus(t, a.post("/v1/batch", testWriteKey, batch), http.StatusServiceUnavailable)
	}
	if n := len(a.events(t, user("u1"))); n != 1 {
		t.Errorf("u1's one message is stored %d times after the batch was resent", n)
	}
}

// Invariant: paging tokens carry no personal data (they travel in request
// URLs, which proxies and access logs keep). The external_ids cursor is the
// base64 of the last identifier in clear: a page of user_id:ada's
// identifiers hands the client a "next" that is her email address, to be
// put in the next URL (the caller named her by user id only).
func TestProfilesExternalIDsCursorCarriesNoIdentifier(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	got := a.get(space + "users/profiles/user_id:ada/external_ids?limit=2")
	wantStatus(t, got, http.StatusOK)
	next := decodeInto[struct{ Cursor cursor }](t, got).Cursor.Next
	if next == "" {
		t.Fatalf("no next cursor: %s", got.body)
	}
	for _, enc := range []func(string) (string, error){
		func(s string) (string, error) { b, err := base64.RawURLEncoding.DecodeString(s); return string(b), err },
		func(s string) (string, error) { return s, nil },
	} {
		if plain, err := enc(next); err == nil && (strings.Contains(plain, "ada@example.com") || strings.Contains(plain, "anon-ada")) {
			t.Errorf("the cursor %q is an identifier of the person in clear: %q", next, plain)
		}
	}
}

// Invariant: a cursor that names no position is refused (validation_error),
// never answered as the end of the list. A stale or tampered external_ids
// cursor (an identifier the profile does not hold) gets 200, no data,
// has_more false: the client stops, believing it has every identifier.
func TestProfilesExternalIDsUnknownCursorRefused(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	bogus := base64.RawURLEncoding.EncodeToString([]byte("user_id:nobody"))
	got := a.get(space + "users/profiles/user_id:ada/external_ids?next=" + bogus)
	if got.status == http.StatusOK {
		t.Errorf("an unknown cursor answered 200 (an empty last page): %s", got.body)
	}
}
