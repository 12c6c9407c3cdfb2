package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
)

func TestDeadlinesExtensionsAndOverdue(t *testing.T) {
	clk := newClock(time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC))
	hang := &hanging{release: make(chan struct{})}
	defer close(hang.release)
	e := newEnv(t, privacy.WithClock(clk.now), privacy.WithDestinations(hang),
		privacy.WithDelivery(privacy.Delivery{Timeout: time.Hour}))
	ctx := context.Background()
	person(t, e, "ada")
	r, err := e.c.Erase(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	// One calendar month: 31 January is due on 3 March (time.AddDate normalises 31 February).
	if want := clk.now().AddDate(0, 1, 0); !r.Due.Equal(want) {
		t.Fatalf("due %v, want %v", r.Due, want)
	}
	if _, err := e.c.Extend(ctx, r.ID, 3, "complex"); !errors.Is(err, privacy.ErrInvalid) {
		t.Fatalf("extending by three months: %v, want ErrInvalid", err)
	}
	if _, err := e.c.Extend(ctx, r.ID, 1, ""); !errors.Is(err, privacy.ErrInvalid) {
		t.Fatalf("extending without a reason: %v, want ErrInvalid", err)
	}
	ext, err := e.c.Extend(ctx, r.ID, 2, "the person holds accounts in three regions")
	if err != nil || !ext.Due.Equal(r.Due.AddDate(0, 2, 0)) || ext.ExtensionReason == "" {
		t.Fatalf("Extend = %+v, %v", ext, err)
	}
	if over, err := e.c.Overdue(ctx); err != nil || len(over) != 0 {
		t.Fatalf("Overdue before the due date = %v, %v", over, err)
	}
	clk.advance(100 * 24 * time.Hour) // the hanging destination never acknowledged
	over, err := e.c.Overdue(ctx)
	if err != nil || len(over) != 1 || over[0].ID != r.ID {
		t.Fatalf("Overdue = %v, %v; want the erasure", over, err)
	}
}

func TestRequestsListingAndAudit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	person(t, e, "ada")
	person(t, e, "bob")
	var ids []string
	for _, req := range []privacy.Request{
		{Type: privacy.SuppressOnly, Subjects: []identity.ID{user("ada")}},
		{Type: privacy.Unsuppress, Subjects: []identity.ID{user("ada")}},
		{Type: privacy.DeleteOnly, Subjects: []identity.ID{user("bob")}},
		{Type: "BOGUS", Subjects: []identity.ID{user("bob")}},
	} {
		r, _ := e.c.Apply(ctx, req)
		ids = append(ids, r.ID)
	}
	page, err := e.c.Requests(ctx, privacy.RequestFilter{Statuses: []privacy.Status{privacy.Finished}, Limit: 2})
	if err != nil || len(page.Receipts) != 2 || page.Next == "" || page.Receipts[0].ID != ids[2] {
		t.Fatalf("first page = %+v, %v", page, err)
	}
	next, err := e.c.Requests(ctx, privacy.RequestFilter{Statuses: []privacy.Status{privacy.Finished}, Limit: 2, Cursor: page.Next})
	if err != nil || len(next.Receipts) != 1 || next.Receipts[0].ID != ids[0] || next.Next != "" {
		t.Fatalf("second page = %+v, %v", next, err)
	}
	inv, _ := e.c.Requests(ctx, privacy.RequestFilter{Statuses: []privacy.Status{privacy.Invalid}})
	if len(inv.Receipts) != 1 || inv.Receipts[0].ID != ids[3] {
		t.Fatalf("invalid requests = %+v", inv)
	}
	if _, err := e.c.Status(ctx, "req_nope"); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("Status(unknown) = %v", err)
	}
	n, err := e.c.VerifyAudit(ctx)
	if err != nil || n < 8 {
		t.Fatalf("VerifyAudit = %d, %v; want every step recorded and verified", n, err)
	}
}

// R5: the reason of a failed rectification names the person in clear, in the
// journal and the append-only audit log.
func TestRegressionReasonLeaksIdentifier(t *testing.T) {
	al := audit.NewMemLog()
	mj := journal.NewMemJournal()
	e := newEnv(t, privacy.WithAuditLog(al), privacy.WithJournal(mj))
	ctx := context.Background()
	r, err := e.c.Rectify(ctx, email("secret.person@example.com"), map[string]any{"plan": "x"})
	t.Logf("err %v", err)
	je, _ := mj.Get(ctx, r.ID)
	if strings.Contains(je.Reason, "secret.person") {
		t.Errorf("journal keeps %q", je.Reason)
	}
	recs, _ := al.Records(ctx, 0, 100)
	for _, rc := range recs {
		if strings.Contains(rc.Detail, "secret.person") {
			t.Errorf("audit record %q keeps %q", rc.Action, rc.Detail)
		}
	}
}

// R6: an extension made while destinations are pending is overwritten by the
// tracker's copy of the entry.
func TestRegressionExtendLostWhileDelivering(t *testing.T) {
	hang := &hanging{release: make(chan struct{})}
	e := newEnv(t, privacy.WithDestinations(hang), privacy.WithDelivery(privacy.Delivery{Timeout: time.Hour}))
	ctx := context.Background()
	person(t, e, "ada")
	flushAsync := func() {}
	_ = flushAsync
	close(hang.release) // let earlier sends go
	flush(t, e.c)
	hang.release = make(chan struct{})
	r, err := e.c.Erase(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := e.c.Extend(ctx, r.ID, 2, "complex")
	if err != nil {
		t.Fatal(err)
	}
	close(hang.release)
	flush(t, e.c)
	final, _ := e.c.Status(ctx, r.ID)
	if !final.Due.Equal(ext.Due) || final.ExtensionReason == "" {
		t.Errorf("extension lost: due %v (extended to %v), reason %q, status %s", final.Due, ext.Due, final.ExtensionReason, final.Status)
	}
}

// R7: Extend by an absurd number of months overflows and is accepted.
func TestRegressionExtendOverflow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r, _ := e.c.Erase(ctx, user("nobody"))
	ext, err := e.c.Extend(ctx, r.ID, math.MaxInt, "why not")
	if err == nil {
		t.Errorf("accepted: due %v (received %v)", ext.Due, ext.Received)
	}
	if _, err := e.c.Extend(ctx, "req_nope", 1, "x"); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("Extend(unknown) = %v, not ErrNotFound", err)
	}
}

// quotingDestination fails every deletion with an error that quotes the
// identifiers it was given, as real APIs do ("no user a@b.c").
type quotingDestination struct{}

func (quotingDestination) Name() string { return "quoting" }

func (quotingDestination) Send(context.Context, []destination.Message) error { return nil }

func (quotingDestination) Delete(_ context.Context, d destination.Deletion) error {
	var vals []string
	for _, id := range d.IDs {
		vals = append(vals, id.Value)
	}
	// Kept: the text is the receipt's, so the Controller's scrub is what
	// keeps the identifiers out of it.
	return destination.Kept(nil, "no such user: %s", strings.Join(vals, ", "))
}

// TestReceiptsDoNotQuoteIdentifiers checks that error texts kept in receipts
// name people by keyed hash, not by the clear identifiers a destination or a
// validation error quoted: receipts outlive the clear data.
func TestReceiptsDoNotQuoteIdentifiers(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, privacy.WithDestinations(quotingDestination{}), fastDelivery())
	person(t, e, "ada")
	r, err := e.c.Erase(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	final, err := e.c.Status(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(final.Destinations) != 1 || final.Destinations[0].Status != privacy.Failed {
		t.Fatalf("destination outcomes = %+v, want one FAILED", final.Destinations)
	}
	msg := final.Destinations[0].Err
	if strings.Contains(withoutLabels(msg), "ada") || !strings.HasPrefix(msg, "no such user: [") || !strings.Contains(msg, "[user_id ") {
		t.Errorf("outcome error = %q: want the identifiers replaced by keyed hashes", msg)
	}

	// A backend error quoting the person, before the decision: FAILED, and the
	// reason names the operation and the error's kind, never its text.
	e2 := newEnv(t, privacy.WithProfiles(quotingProfiles{profile.NewMemStore()}))
	person(t, e2, "grace")
	failed, err := e2.c.Erase(ctx, user("grace"))
	if err == nil && failed.Status != privacy.Failed {
		t.Fatalf("erasure with a failing profile store: %+v", failed)
	}
	if failed == nil || strings.Contains(failed.Reason, "grace") || !strings.Contains(failed.Reason, "profile delete: failed") {
		t.Errorf("FAILED reason = %+v: want the operation and the error's kind, without the backend's text", failed)
	}
	if strings.Contains(err.Error(), "grace") || !errors.As(err, new(quotingError)) {
		t.Errorf("the error returned = %v: want it without the backend's text, which errors.As still reaches", err)
	}
}

// quotingProfiles is a profile store whose deletions fail with an error that
// quotes the person.
type quotingProfiles struct{ profile.Store }

type quotingProfilesTx struct{ profile.Tx }

func (s quotingProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	return quotingProfilesTx{tx}, err
}

func (quotingProfilesTx) Delete(context.Context, identity.ProfileID) error {
	return quotingError{}
}

// quotingError is a backend's error whose text quotes the person.
type quotingError struct{}

func (quotingError) Error() string { return "refusing to delete the profile of user grace" }

// redactionLabel is how a receipt names a person's identifier: by type and
// keyed hash.
var redactionLabel = regexp.MustCompile(`\[[a-z_.]+ [0-9a-f]{12}\]`)

// withoutLabels is text without its redaction labels, whose hex digits may
// happen to spell a short value ("ada").
func withoutLabels(text string) string { return redactionLabel.ReplaceAllString(text, "") }

// TestRedactionLabelsAreNotRedactedAgain: an identifier the request names
// twice (as its subject, and among the identifiers it forwards) is replaced
// once, even when its own label's hash happens to contain it. (The labels
// used to be scanned again for every value, and nested into each other.)
func TestRedactionLabelsAreNotRedactedAgain(t *testing.T) {
	key := []byte("a fixed key for the redaction test")
	h, err := identity.NewHasher(key)
	if err != nil {
		t.Fatal(err)
	}
	// A user id made of hex digits that its own label's hash contains.
	value := ""
	for n := 0; n < 1<<12 && value == ""; n++ {
		if v := fmt.Sprintf("%03x", n); strings.Contains(h.ID(user(v)).String()[:12], v) {
			value = v
		}
	}
	if value == "" {
		t.Fatal("no three hex digits found in their own label's hash: pick another key")
	}
	ctx := context.Background()
	e := newEnv(t, privacy.WithDestinations(quotingDestination{}), fastDelivery(), privacy.WithKey(key))
	e.collect(t, privacy.Identify{UserID: value, Timestamp: at(0)})
	r, err := e.c.Erase(ctx, user(value))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	final, err := e.c.Status(ctx, r.ID)
	if err != nil || len(final.Destinations) != 1 {
		t.Fatalf("Status = %+v, %v", final, err)
	}
	label := "[user_id " + h.ID(user(value)).String()[:12] + "]"
	if want := "no such user: " + label; final.Destinations[0].Err != want {
		t.Errorf("outcome error = %q; want %q", final.Destinations[0].Err, want)
	}
}

// numberQuotingDestination fails every send with a kept error that quotes
// the batch's traits and properties, numbers included.
type numberQuotingDestination struct{}

func (numberQuotingDestination) Name() string { return "numbers" }

func (numberQuotingDestination) Send(_ context.Context, msgs []destination.Message) error {
	var vals []string
	for _, m := range msgs {
		for _, v := range m.Traits {
			vals = append(vals, fmt.Sprint(v))
		}
		for _, v := range m.Properties {
			vals = append(vals, fmt.Sprint(v))
		}
	}
	return destination.Kept(destination.ErrRejected, "refused values: %s; status 400", strings.Join(vals, ", "))
}

func (numberQuotingDestination) Delete(context.Context, destination.Deletion) error { return nil }

// TestDeadLettersDoNotQuoteNumbers: a destination's kept error that quotes a
// trait or a property kept as a number (a phone number) keeps it out of the
// dead letter, as it does a text value; a short number of the error's own
// (a status) stays.
func TestDeadLettersDoNotQuoteNumbers(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, privacy.WithDestinations(numberQuotingDestination{}), fastDelivery())
	if err := e.c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: "ada", Timestamp: time.Now(),
		Traits: map[string]any{"phone": 15551234567, "zip": map[string]any{"code": 69001.0}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Collect(ctx, privacy.Track{MessageID: "m2", UserID: "ada", Event: "Paid", Timestamp: time.Now(),
		Properties: map[string]any{"card_last_digits": int64(424242)}}); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	dead, err := e.c.DeadLetters(ctx, "numbers", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) == 0 {
		t.Fatal("no dead letters: the destination refused everything")
	}
	for _, d := range dead {
		for _, n := range []string{"15551234567", "1.5551234567e+10", "69001", "424242"} {
			if strings.Contains(d.LastError, n) {
				t.Errorf("dead letter %s keeps %q: %q", d.MessageID, n, d.LastError)
			}
		}
		if !strings.Contains(d.LastError, "status 400") {
			t.Errorf("dead letter %s: %q; want the destination's own words kept", d.MessageID, d.LastError)
		}
	}
}
