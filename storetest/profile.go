package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

var profileChecks = []check[profile.Store]{
	{"UpdateCreates", profileUpdateCreates},
	{"EncodedContext", profileEncodedContext},
	{"NotFound", profileNotFound},
	{"UpdateSetsAndRemovesTraits", profileUpdateSetsAndRemoves},
	{"DuplicateMessage", profileDuplicateMessage},
	{"InvalidUpdate", profileInvalidUpdate},
	{"EventsOrder", profileEventsOrder},
	{"EventsPaging", profileEventsPaging},
	{"EventsFilters", profileEventsFilters},
	{"EventsCursorSurvivesWrites", profileEventsCursorSurvivesWrites},
	{"EventsInvalidQuery", profileEventsInvalidQuery},
	{"Merge", profileMerge},
	{"MergeIsIdempotent", profileMergeIsIdempotent},
	{"MergeIntoMissingProfile", profileMergeIntoMissing},
	{"MergeIntoProfileCreatedInSameTx", profileMergeIntoNew},
	{"Delete", profileDelete},
	{"DeleteIsIdempotent", profileDeleteIsIdempotent},
	{"DeleteShreddedThenPurge", profileDeleteShreddedThenPurge},
	{"IDs", profileIDs},
	{"PickTraits", profilePickTraits},
	{"PruneEvents", profilePruneEvents},
	{"CopyAtBoundary", profileCopyAtBoundary},
	{"HandedOverTraits", profileHandedOverTraits},
	{"TxSeesOwnWrites", profileTxSeesOwnWrites},
	{"UncommittedInvisible", profileUncommittedInvisible},
	{"RollbackDiscards", profileRollbackDiscards},
	{"RollbackAfterCommitIsNoOp", profileRollbackAfterCommit},
	{"TxDone", profileTxDone},
	{"CancelledCommitIsAllOrNothing", profileCancelledCommit},
	{"ConcurrentWriters", profileConcurrentWriters},
	// The optional profile.BatchTx (batch.go).
	{"MetadataBatch", profileMetadataBatch},
	{"MetadataBatchCopyAtBoundary", profileMetadataBatchCopyAtBoundary},
	{"MetadataBatchMany", profileMetadataBatchMany},
	{"PickTraitsBatch", profilePickTraitsBatch},
	{"PickTraitsBatchCopyAtBoundary", profilePickTraitsBatchCopyAtBoundary},
	{"PickTraitsBatchMany", profilePickTraitsBatchMany},
	{"UpdateBatchEqualsUpdates", profileUpdateBatchEqualsUpdates},
	{"UpdateBatchDuplicates", profileUpdateBatchDuplicates},
	{"UpdateBatchTraitOrder", profileUpdateBatchTraitOrder},
	{"UpdateBatchCreates", profileUpdateBatchCreates},
	{"UpdateBatchInvalid", profileUpdateBatchInvalid},
	{"UpdateBatchCopyAtBoundary", profileUpdateBatchCopyAtBoundary},
	{"UpdateBatchMany", profileUpdateBatchMany},
	{"UpdateBatchUncommittedInvisible", profileUpdateBatchUncommittedInvisible},
	{"UpdateBatchRollbackDiscards", profileUpdateBatchRollbackDiscards},
	{"UpdateBatchTxDone", profileUpdateBatchTxDone},
}

// ev returns an event at t0 plus sec seconds, with nested properties.
func ev(id, name string, sec int) *profile.Event {
	types := []string{"track", "page", "screen", "group", "alias", ""} // "": an event stored before types were kept
	return &profile.Event{
		MessageID: id,
		Type:      types[sec%len(types)],
		Source:    []string{"web", ""}[sec%2],
		Name:      name,
		Properties: map[string]any{"id": id, "sec": float64(sec),
			"nested": map[string]any{"list": []any{"x", 1.5, true, nil}, "ok": false},
			// Any JSON number, read back exactly (profile.DecodeValue).
			"big": json.Number("9007199254740993"), "digits": json.Number("0.10000000000000000555")},
		// Every other event has a context, as a message's.
		Context:    map[bool]map[string]any{true: {"ip": "203.0.113.7", "page": map[string]any{"url": "https://x.example/" + id}, "n": []any{float64(sec)}}}[sec%2 == 0],
		Timestamp:  at(sec),
		ReceivedAt: at(sec + 1000),
	}
}

// track is the Update that stores e as message e.MessageID.
func track(version uint64, e *profile.Event) profile.Update {
	return profile.Update{
		MessageID: e.MessageID,
		Event:     e,
		Metadata: profile.Metadata{CreatedAt: at(0), UpdatedAt: e.ReceivedAt, Version: version,
			FirstMessageID: "first", LastMessageID: e.MessageID, FirstSeen: at(0), LastSeen: e.Timestamp,
			Recipients: []profile.Recipient{{Name: "crm", FirstSent: at(0), LastSent: e.ReceivedAt}, {Name: "ads", FirstSent: at(1), LastSent: at(2)}},
			Consent:    consentAt(e.Timestamp),
			Accounts:   []profile.AccountLink{{GroupID: "acme", FirstLinked: at(0), LastLinked: e.Timestamp}, {GroupID: "globex", FirstLinked: at(1), LastLinked: at(1)}}},
	}
}

// consentAt is a consent last set at t, in each status, with its history.
func consentAt(t time.Time) profile.Consent {
	return profile.NewConsent(
		map[string]profile.ConsentStatus{"Advertising": profile.ConsentGranted, "Analytics": profile.ConsentDenied, "Functional": profile.ConsentConflict},
		t,
		[]profile.ConsentChange{
			{MessageID: "c1", Type: "identify", Source: "web", Timestamp: at(0), ReceivedAt: at(1), Preferences: map[string]bool{"Advertising": false}},
			{MessageID: "c2", Type: "track", Event: "Segment Consent Preference Updated", Timestamp: t, ReceivedAt: t.Add(time.Second),
				Preferences: map[string]bool{"Advertising": true, "Analytics": false}},
			{MessageID: "c3", Type: profile.ConsentMerge, Timestamp: t, ReceivedAt: t.Add(2 * time.Second), Preferences: map[string]bool{}},
		})
}

// traitsUpdate sets traits, recorded as message id.
func traitsUpdate(version uint64, id string, traits map[string]any) profile.Update {
	u := profile.Update{MessageID: id, Metadata: profile.Metadata{CreatedAt: at(0), UpdatedAt: at(int(version)), Version: version, LastMessageID: id}}
	if traits != nil {
		u.Set = map[string]profile.Trait{}
		for k, v := range traits {
			u.Set[k] = profile.Trait{Value: v, Source: "web", UpdatedAt: at(int(version))}
		}
	}
	return u
}

// update applies u to pid in a transaction of its own.
func update(t *testing.T, e *env, s profile.Store, pid identity.ProfileID, u profile.Update) error {
	t.Helper()
	tx, err := s.Begin(e.ctx)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	defer tx.Rollback(e.ctx)
	if err := tx.Update(e.ctx, pid, u); err != nil {
		return err
	}
	return tx.Commit(e.ctx)
}

func mustUpdate(t *testing.T, e *env, s profile.Store, pid identity.ProfileID, u profile.Update) {
	t.Helper()
	if err := update(t, e, s, pid, u); err != nil {
		t.Fatalf("Update(%s, message %q): %v", pid, u.MessageID, err)
	}
}

// storeEvents stores one event per second given, named by names in turn,
// with message ids m000, m001, ... in the order given.
func storeEvents(t *testing.T, e *env, s profile.Store, pid identity.ProfileID, names []string, secs ...int) []profile.Event {
	t.Helper()
	var out []profile.Event
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		for i, sec := range secs {
			x := ev(fmt.Sprintf("m%03d", i), names[i%len(names)], sec)
			if err := tx.Update(e.ctx, pid, track(uint64(i+1), x)); err != nil {
				return err
			}
			out = append(out, *x)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b profile.Event) int { return profile.CompareEvents(&a, &b) })
	return out
}

// allEvents walks every page of q and returns the events in page order. It
// checks the pages: none larger than the limit, a page with a Next is full, no
// empty page after the first, each Next a cursor (profile.EncodeCursor) at the
// page's last event, and the walk ends.
func allEvents(t *testing.T, ctx context.Context, r profile.Reader, pid identity.ProfileID, q profile.EventQuery) []profile.Event {
	t.Helper()
	nq, _, err := q.Normalize()
	if err != nil {
		t.Fatalf("the check's query %+v: %v", q, err)
	}
	var evs []profile.Event
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("Events(%+v): more than 1000 pages; the cursor does not advance", q)
		}
		page, err := r.Events(ctx, pid, q)
		if err != nil {
			t.Fatalf("Events(%+v), page %d: %v", q, pages+1, err)
		}
		switch {
		case len(page.Events) > nq.Limit:
			t.Fatalf("Events(%+v), page %d: %d events, more than the limit %d", q, pages+1, len(page.Events), nq.Limit)
		case page.Next != "" && len(page.Events) != nq.Limit:
			t.Errorf("Events(%+v), page %d: %d events and a Next; want a full page of %d", q, pages+1, len(page.Events), nq.Limit)
		case pages > 0 && len(page.Events) == 0:
			t.Errorf("Events(%+v), page %d: empty, after a page that had a Next; the page before was the last and should have had none", q, pages+1)
		}
		evs = append(evs, page.Events...)
		if page.Next == "" {
			return evs
		}
		c, err := profile.DecodeCursor(page.Next)
		if err != nil {
			t.Fatalf("Events(%+v), page %d: Next %q is not a cursor of profile.EncodeCursor: %v", q, pages+1, page.Next, err)
		}
		if last := page.Events[len(page.Events)-1]; c.Sort != nq.Sort || !c.Timestamp.Equal(last.Timestamp) || c.MessageID != last.MessageID {
			t.Errorf("Events(%+v), page %d: Next is at %+v; want the page's last event (%s, %v, %s)", q, pages+1, c, nq.Sort, last.Timestamp, last.MessageID)
		}
		q.Cursor = page.Next
	}
}

func messageIDs(evs []profile.Event) []string {
	ids := []string{}
	for _, e := range evs {
		ids = append(ids, e.MessageID)
	}
	return ids
}

// storedProfile is what a Reader shows of one profile.
type storedProfile struct {
	Traits map[string]profile.Trait
	Meta   profile.Metadata
	Events []profile.Event
}

// viewProfiles returns what r shows of each of pids: nil for those not found
// (checking that Get, Metadata and Events agree on it).
func viewProfiles(t *testing.T, ctx context.Context, r profile.Reader, pids ...identity.ProfileID) map[identity.ProfileID]*storedProfile {
	t.Helper()
	out := map[identity.ProfileID]*storedProfile{}
	for _, pid := range pids {
		p, err := r.Get(ctx, pid)
		if errors.Is(err, profile.ErrNotFound) {
			if _, err := r.Metadata(ctx, pid); !errors.Is(err, profile.ErrNotFound) {
				t.Errorf("Get(%s) is ErrNotFound, but Metadata = %v", pid, err)
			}
			if _, err := r.Events(ctx, pid, profile.EventQuery{}); !errors.Is(err, profile.ErrNotFound) {
				t.Errorf("Get(%s) is ErrNotFound, but Events = %v", pid, err)
			}
			out[pid] = nil
			continue
		}
		if err != nil {
			t.Fatalf("Get(%s): %v", pid, err)
		}
		if p.ID != "" && p.ID != pid {
			t.Errorf("Get(%s) returned a profile with ID %s", pid, p.ID)
		}
		if len(p.ExternalIDs) > 0 {
			t.Errorf("Get(%s) returned ExternalIDs %v; the identity graph owns them, a Store neither keeps nor returns them", pid, p.ExternalIDs)
		}
		meta, err := r.Metadata(ctx, pid)
		if err != nil {
			t.Fatalf("Metadata(%s): %v", pid, err)
		}
		if d := diff(p.Metadata, meta); d != "" {
			t.Errorf("Metadata(%s) differs from Get's (-Get +Metadata):\n%s", pid, d)
		}
		out[pid] = &storedProfile{Traits: p.Traits, Meta: meta,
			Events: allEvents(t, ctx, r, pid, profile.EventQuery{Sort: profile.Asc, Limit: profile.MaxLimit})}
	}
	return out
}

// profileFixture is two profiles to merge and one bystander:
//
//	A: m1 at 1, m3 at 3, message mx without an event (trait a)
//	B: m2 at 2, m3 at 30 (a message A has too), message my without an event
//	   (trait b), mx at 7 (a message A has recorded), m5 at 5, m4 at 4
//	C: c1 at 1
type profileFixture struct {
	A, B, C identity.ProfileID
	pids    []identity.ProfileID
}

func seedProfiles(t *testing.T, e *env, s profile.Store) *profileFixture {
	t.Helper()
	ps := newPIDs(3)
	f := &profileFixture{A: ps[0], B: ps[1], C: ps[2], pids: ps}
	mustUpdate(t, e, s, f.A, track(1, ev("m1", "a", 1)))
	mustUpdate(t, e, s, f.A, track(2, ev("m3", "a", 3)))
	mustUpdate(t, e, s, f.A, traitsUpdate(3, "mx", map[string]any{"a": "A", "shared": "from A"}))
	mustUpdate(t, e, s, f.B, track(1, ev("m2", "b", 2)))
	mustUpdate(t, e, s, f.B, track(2, ev("m3", "b", 30)))
	mustUpdate(t, e, s, f.B, traitsUpdate(3, "my", map[string]any{"b": "B", "shared": "from B"}))
	mustUpdate(t, e, s, f.B, track(4, ev("mx", "b", 7)))
	mustUpdate(t, e, s, f.B, track(5, ev("m5", "b", 5)))
	mustUpdate(t, e, s, f.B, track(6, ev("m4", "b", 4)))
	mustUpdate(t, e, s, f.C, track(1, ev("c1", "c", 1)))
	return f
}

func (f *profileFixture) view(t *testing.T, ctx context.Context, r profile.Reader) map[identity.ProfileID]*storedProfile {
	t.Helper()
	return viewProfiles(t, ctx, r, f.pids...)
}

func profileUpdateCreates(t *testing.T, e *env, s profile.Store) {
	pid := newPID()
	x := ev("m1", "Signed Up", 5)
	u := track(1, x)
	u.Set = map[string]profile.Trait{
		"plan":    {Value: "pro", Source: "web", UpdatedAt: at(5)},
		"score":   {Value: 42.5, Source: "web", UpdatedAt: at(5)},
		"vip":     {Value: true, Source: profile.SourceIdentify, UpdatedAt: at(5)},
		"tags":    {Value: []any{"a", "b", 3.0}, Source: "web", UpdatedAt: at(5)},
		"address": {Value: map[string]any{"city": "Paris", "geo": map[string]any{"lat": 48.85}}, Source: "crm", UpdatedAt: at(4)},
		"empty":   {Value: "", Source: "web", UpdatedAt: at(5)},
	}
	mustUpdate(t, e, s, pid, u)
	got := viewProfiles(t, e.ctx, s, pid)[pid]
	want := &storedProfile{Traits: u.Set, Meta: u.Metadata, Events: []profile.Event{*x}}
	if d := diff(want, got); d != "" {
		t.Errorf("the profile an Update created (-want +got):\n%s", d)
	}
	// An Update without a message id or an event creates a profile too.
	bare := newPID()
	meta := profile.Metadata{CreatedAt: at(9), UpdatedAt: at(9), Version: 1}
	mustUpdate(t, e, s, bare, profile.Update{Metadata: meta})
	got = viewProfiles(t, e.ctx, s, bare)[bare]
	if d := diff(&storedProfile{Meta: meta}, got); d != "" {
		t.Errorf("the profile a bare Update created (-want +got):\n%s", d)
	}
}

// profileEncodedContext: an Update may carry its event's context as JSON
// too (Update.EncodedContext), which a store may keep rather than encode the
// context again: the event reads back the same either way; an encoding of
// another map (even an equal one) is not the context's, and is not kept.
func profileEncodedContext(t *testing.T, e *env, s profile.Store) {
	for _, own := range []bool{true, false} {
		pid := newPID()
		x := ev("m0", "Viewed", 2) // even: it has a context
		if x.Context == nil {
			t.Fatal("ev(2) has no context")
		}
		budget := profile.MaxValueSize
		of := x.Context
		if !own {
			of = map[string]any{"ip": "198.51.100.1", "forged": true}
		}
		m, enc, err := profile.EncodeObjectWithin("context", of, &budget)
		if err != nil || (own && reflect.ValueOf(m).UnsafePointer() != reflect.ValueOf(x.Context).UnsafePointer()) {
			t.Fatalf("EncodeObjectWithin = %v, %v; want the context itself", m, err)
		}
		u := track(1, x)
		u.EncodedContext = enc
		mustUpdate(t, e, s, pid, u)
		want := &storedProfile{Meta: u.Metadata, Events: []profile.Event{*x}}
		if d := diff(want, viewProfiles(t, e.ctx, s, pid)[pid]); d != "" {
			t.Errorf("an event stored with an EncodedContext (its own: %v) (-want +got):\n%s", own, d)
		}
	}
}

func profileNotFound(t *testing.T, e *env, s profile.Store) {
	seedProfiles(t, e, s)
	missing := newPID()
	for _, name := range []string{"store", "tx"} {
		var r profile.Reader = s
		if name == "tx" {
			tx, err := s.Begin(e.ctx)
			must(t, err, "Begin")
			defer tx.Rollback(e.ctx)
			r = tx
		}
		if p, err := r.Get(e.ctx, missing); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("%s: Get of an unknown profile = %+v, %v; want ErrNotFound", name, p, err)
		}
		if m, err := r.Metadata(e.ctx, missing); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("%s: Metadata of an unknown profile = %+v, %v; want ErrNotFound", name, m, err)
		}
		if p, err := r.Events(e.ctx, missing, profile.EventQuery{}); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("%s: Events of an unknown profile = %+v, %v; want ErrNotFound", name, p, err)
		}
	}
}

func profileUpdateSetsAndRemoves(t *testing.T, e *env, s profile.Store) {
	pid := newPID()
	mustUpdate(t, e, s, pid, traitsUpdate(1, "m1", map[string]any{"plan": "pro", "score": 1.0, "phone": "+33", "city": "Lyon"}))
	u := profile.Update{
		MessageID: "m2",
		Metadata:  profile.Metadata{CreatedAt: at(0), UpdatedAt: at(2), Version: 2, LastMessageID: "m2"},
		Set: map[string]profile.Trait{
			"plan":  {Value: "free", Source: profile.SourceRectification, UpdatedAt: at(2)},
			"new":   {Value: "x", Source: "web", UpdatedAt: at(2)},
			"city":  {Value: "Nice", Source: "web", UpdatedAt: at(2)},
			"score": {Value: 2.0, Source: "web", UpdatedAt: at(2)},
		},
		// Remove comes after Set: "city" is set and removed, so removed.
		Remove: []string{"phone", "city", "never-there"},
	}
	mustUpdate(t, e, s, pid, u)
	got := viewProfiles(t, e.ctx, s, pid)[pid]
	want := &storedProfile{
		Traits: map[string]profile.Trait{
			"plan":  {Value: "free", Source: profile.SourceRectification, UpdatedAt: at(2)},
			"new":   {Value: "x", Source: "web", UpdatedAt: at(2)},
			"score": {Value: 2.0, Source: "web", UpdatedAt: at(2)},
		},
		// Metadata is replaced whole, zero fields included.
		Meta: u.Metadata,
	}
	if d := diff(want, got); d != "" {
		t.Errorf("the profile after setting and removing traits (-want +got):\n%s", d)
	}
	// Every trait removed: none left.
	mustUpdate(t, e, s, pid, profile.Update{Metadata: profile.Metadata{Version: 3}, Remove: []string{"plan", "new", "score"}})
	p, err := s.Get(e.ctx, pid)
	must(t, err, "Get")
	if len(p.Traits) != 0 || p.Metadata.Version != 3 {
		t.Errorf("after removing every trait: traits %v, version %d; want none, 3", p.Traits, p.Metadata.Version)
	}
}

func profileDuplicateMessage(t *testing.T, e *env, s profile.Store) {
	f := seedProfiles(t, e, s)
	before := f.view(t, e.ctx, s)
	// Replays of stored messages, with other content: each changes nothing.
	replays := []profile.Update{
		track(99, ev("m1", "replayed", 50)),
		traitsUpdate(99, "mx", map[string]any{"a": "changed"}),
		// A message recorded without an event, replayed with one.
		track(99, ev("mx", "replayed", 51)),
	}
	for _, u := range replays {
		if err := update(t, e, s, f.A, u); !errors.Is(err, profile.ErrDuplicate) {
			t.Errorf("Update of A with the recorded message %s = %v; want ErrDuplicate", u.MessageID, err)
		}
	}
	if d := diff(before, f.view(t, e.ctx, s)); d != "" {
		t.Errorf("replayed messages changed the store (-before +after):\n%s", d)
	}
	// Refused in a transaction of its own, and after other writes in one.
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	if err := tx.Update(e.ctx, f.A, track(99, ev("m3", "replayed", 52))); !errors.Is(err, profile.ErrDuplicate) {
		t.Errorf("Update of A with the recorded message m3 in a transaction = %v; want ErrDuplicate", err)
	}
	commitAfterRefused(t, e.ctx, tx)
	tx, err = s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	fresh := track(4, ev("m9", "a", 9))
	must(t, tx.Update(e.ctx, f.A, fresh), "Update with a new message")
	// The same message on another profile is not a duplicate.
	must(t, tx.Update(e.ctx, f.C, track(2, ev("m1", "c", 2))), "Update of C with A's message id")
	if err := tx.Update(e.ctx, f.A, track(5, ev("m9", "replayed", 53))); !errors.Is(err, profile.ErrDuplicate) {
		t.Errorf("Update with a message recorded earlier in the same transaction = %v; want ErrDuplicate", err)
	}
	want := before
	if commitAfterRefused(t, e.ctx, tx) {
		want[f.A].Meta = fresh.Metadata
		want[f.A].Events = append(want[f.A].Events, *fresh.Event)
		want[f.C].Meta = track(2, ev("m1", "c", 2)).Metadata
		want[f.C].Events = append([]profile.Event{*ev("c1", "c", 1)}, *ev("m1", "c", 2))
	}
	if d := diff(want, f.view(t, e.ctx, s)); d != "" {
		t.Errorf("the store after duplicate updates (-want +got):\n%s", d)
	}
	// Updates without a message id are never duplicates.
	for i := 0; i < 2; i++ {
		if err := update(t, e, s, f.A, profile.Update{Metadata: profile.Metadata{Version: uint64(10 + i)}}); err != nil {
			t.Errorf("Update without a message id, #%d: %v", i+1, err)
		}
	}
}

func profileInvalidUpdate(t *testing.T, e *env, s profile.Store) {
	f := seedProfiles(t, e, s)
	before := f.view(t, e.ctx, s)
	newcomer := newPID()
	bad := []struct {
		name string
		u    profile.Update
	}{
		{"event without a message id", profile.Update{Event: &profile.Event{Name: "x", Timestamp: at(1)}}},
		{"event with another message id", profile.Update{MessageID: "m7", Event: ev("m8", "x", 1)}},
		{"event with a message id, the update without", profile.Update{Event: ev("m8", "x", 1)}},
	}
	for _, b := range bad {
		for _, pid := range []identity.ProfileID{f.A, newcomer} {
			tx, err := s.Begin(e.ctx)
			must(t, err, "Begin")
			if err := tx.Update(e.ctx, pid, b.u); !errors.Is(err, profile.ErrInvalid) {
				t.Errorf("Update with an %s = %v; want ErrInvalid", b.name, err)
			}
			commitAfterRefused(t, e.ctx, tx)
		}
	}
	want := before
	want[newcomer] = nil
	if d := diff(want, viewProfiles(t, e.ctx, s, append(f.pids, newcomer)...)); d != "" {
		t.Errorf("invalid updates changed the store (-before +after):\n%s", d)
	}
}

func profileEventsOrder(t *testing.T, e *env, s profile.Store) {
	pid := newPID()
	// Stored out of order, two of them at the same time (ordered by message id).
	secs := []int{50, 10, 30, 20, 40, 30, 60, 5, 70, 80, 90, 100}
	all := storeEvents(t, e, s, pid, []string{"a", "b", "c"}, secs...)
	page, err := s.Events(e.ctx, pid, profile.EventQuery{})
	must(t, err, "Events")
	newest := slices.Clone(all)
	slices.Reverse(newest)
	if d := diff(newest[:profile.DefaultLimit], page.Events); d != "" {
		t.Errorf("Events with the zero query: want the newest %d, newest first (-want +got):\n%s", profile.DefaultLimit, d)
	}
	if page.Next == "" {
		t.Errorf("Events with the zero query: no Next, but %d events are left", len(all)-profile.DefaultLimit)
	}
	asc := allEvents(t, e.ctx, s, pid, profile.EventQuery{Sort: profile.Asc, Limit: profile.MaxLimit})
	if d := diff(all, asc); d != "" {
		t.Errorf("Events, oldest first (-want +got):\n%s", d)
	}
	desc := allEvents(t, e.ctx, s, pid, profile.EventQuery{Sort: profile.Desc, Limit: profile.MaxLimit})
	if d := diff(newest, desc); d != "" {
		t.Errorf("Events, newest first (-want +got):\n%s", d)
	}
}

func profileEventsPaging(t *testing.T, e *env, s profile.Store) {
	pid := newPID()
	secs := make([]int, 23)
	for i := range secs {
		secs[i] = (i * 7) % 23 // a permutation: stored out of order
	}
	secs[3], secs[4] = 11, 11 // a tie across a page boundary
	all := storeEvents(t, e, s, pid, []string{"a"}, secs...)
	newest := slices.Clone(all)
	slices.Reverse(newest)
	for _, limit := range []int{1, 5, 11, 23, 24} {
		for _, sort := range []profile.Order{profile.Asc, profile.Desc, ""} {
			want := all
			if sort != profile.Asc {
				want = newest
			}
			got := allEvents(t, e.ctx, s, pid, profile.EventQuery{Sort: sort, Limit: limit})
			if d := diff(messageIDs(want), messageIDs(got)); d != "" {
				t.Errorf("walking the events %d at a time, sort %q (-want +got):\n%s", limit, sort, d)
			}
		}
	}
	// The exact multiple: the last full page has no Next.
	page, err := s.Events(e.ctx, pid, profile.EventQuery{Sort: profile.Asc, Limit: 23})
	must(t, err, "Events")
	if len(page.Events) != 23 || page.Next != "" {
		t.Errorf("Events with a limit of exactly all 23: %d events, Next %q; want 23 and no Next", len(page.Events), page.Next)
	}
}

func profileEventsFilters(t *testing.T, e *env, s profile.Store) {
	pid := newPID()
	secs := make([]int, 30)
	for i := range secs {
		secs[i] = 29 - i
	}
	all := storeEvents(t, e, s, pid, []string{"Viewed", "Ordered", "Opened"}, secs...)
	queries := []profile.EventQuery{
		{Start: at(10)},
		{End: at(10)},
		{Start: at(5), End: at(6)},
		{Start: at(7), End: at(21)},
		{Include: []string{"Ordered"}},
		{Include: []string{"Ordered", "Opened"}},
		{Include: []string{"Nothing"}},
		{Exclude: []string{"Viewed"}},
		{Exclude: []string{"Viewed", "Ordered", "Opened"}},
		{Include: []string{"Ordered", "Viewed"}, Exclude: []string{"Viewed"}},
		{Start: at(3), End: at(25), Include: []string{"Viewed", "Opened"}, Exclude: []string{"Opened"}},
		{Start: at(100)},
		{End: at(-5)},
	}
	for _, q := range queries {
		var want []string
		for i := range all {
			if q.Matches(&all[i]) {
				want = append(want, all[i].MessageID)
			}
		}
		for _, sort := range []profile.Order{profile.Asc, profile.Desc} {
			w := slices.Clone(want)
			if sort == profile.Desc {
				slices.Reverse(w)
			}
			for _, limit := range []int{2, profile.MaxLimit} {
				q := q
				q.Sort, q.Limit = sort, limit
				got := allEvents(t, e.ctx, s, pid, q)
				if d := diff(w, messageIDs(got)); d != "" {
					t.Errorf("Events(Start %v, End %v, Include %v, Exclude %v, Sort %s, Limit %d) (-want +got):\n%s",
						q.Start, q.End, q.Include, q.Exclude, sort, limit, d)
				}
			}
		}
	}
}

func profileEventsCursorSurvivesWrites(t *testing.T, e *env, s profile.Store) {
	// A cursor is a position, not an index: events stored between two pages
	// make the walk neither repeat nor skip the events it had not reached.
	for _, tc := range []struct {
		sort              profile.Order
		earlySec, lateSec int // ahead of the cursor in walk order, and behind it
		want              []string
	}{
		{profile.Asc, 1, 5, []string{"m000", "m001", "m002", "late", "m003", "m004"}},
		{profile.Desc, 7, 3, []string{"m004", "m003", "m002", "late", "m001", "m000"}},
	} {
		pid := newPID()
		storeEvents(t, e, s, pid, []string{"a"}, 0, 2, 4, 6, 8)
		page, err := s.Events(e.ctx, pid, profile.EventQuery{Sort: tc.sort, Limit: 2})
		must(t, err, "Events")
		mustUpdate(t, e, s, pid, profile.Update{MessageID: "early", Event: ev("early", "a", tc.earlySec)})
		mustUpdate(t, e, s, pid, profile.Update{MessageID: "late", Event: ev("late", "a", tc.lateSec)})
		rest := allEvents(t, e.ctx, s, pid, profile.EventQuery{Sort: tc.sort, Limit: 2, Cursor: page.Next})
		got := append(messageIDs(page.Events), messageIDs(rest)...)
		if d := diff(tc.want, got); d != "" {
			t.Errorf("walk %s with writes between pages (-want +got):\n%s", tc.sort, d)
		}
	}
}

func profileEventsInvalidQuery(t *testing.T, e *env, s profile.Store) {
	pid := newPID()
	storeEvents(t, e, s, pid, []string{"a"}, 1, 2, 3)
	ascPage, err := s.Events(e.ctx, pid, profile.EventQuery{Sort: profile.Asc, Limit: 1})
	must(t, err, "Events")
	bad := []struct {
		name string
		q    profile.EventQuery
	}{
		{"a negative limit", profile.EventQuery{Limit: -1}},
		{"a limit over MaxLimit", profile.EventQuery{Limit: profile.MaxLimit + 1}},
		{"an unknown sort", profile.EventQuery{Sort: "sideways"}},
		{"Start equal to End", profile.EventQuery{Start: at(2), End: at(2)}},
		{"Start after End", profile.EventQuery{Start: at(3), End: at(1)}},
		{"a malformed cursor", profile.EventQuery{Cursor: "not a cursor!"}},
		{"a cursor of the other sort", profile.EventQuery{Sort: profile.Desc, Cursor: ascPage.Next}},
	}
	for _, name := range []string{"store", "tx"} {
		var r profile.Reader = s
		if name == "tx" {
			tx, err := s.Begin(e.ctx)
			must(t, err, "Begin")
			defer tx.Rollback(e.ctx)
			r = tx
		}
		for _, b := range bad {
			if page, err := r.Events(e.ctx, pid, b.q); !errors.Is(err, profile.ErrInvalid) {
				t.Errorf("%s: Events with %s = %d events, %v; want ErrInvalid", name, b.name, len(page.Events), err)
			}
		}
	}
}

func profileMerge(t *testing.T, e *env, s profile.Store) {
	f := seedProfiles(t, e, s)
	before := f.view(t, e.ctx, s)
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error { return tx.Merge(e.ctx, f.A, f.B) })
	after := f.view(t, e.ctx, s)
	if after[f.B] != nil {
		t.Errorf("the merged profile B still exists: %+v", after[f.B])
	}
	a := after[f.A]
	if a == nil {
		t.Fatal("the target A is gone after the merge")
	}
	// Traits and metadata are the caller's to merge.
	if d := diff(before[f.A].Traits, a.Traits); d != "" {
		t.Errorf("Merge changed A's traits (-before +after):\n%s", d)
	}
	if d := diff(before[f.A].Meta, a.Meta); d != "" {
		t.Errorf("Merge changed A's metadata (-before +after):\n%s", d)
	}
	// B's events whose message A had (m3 as an event, mx as a recorded message)
	// are dropped; the rest move whole and in order.
	want := []profile.Event{*ev("m1", "a", 1), *ev("m2", "b", 2), *ev("m3", "a", 3), *ev("m4", "b", 4), *ev("m5", "b", 5)}
	if d := diff(want, a.Events); d != "" {
		t.Errorf("A's events after the merge (-want +got):\n%s", d)
	}
	if d := diff(before[f.C], after[f.C]); d != "" {
		t.Errorf("Merge changed the bystander C (-before +after):\n%s", d)
	}
	// B's recorded message ids moved, A's stayed.
	for _, id := range []string{"m1", "m2", "m3", "m4", "m5", "mx", "my"} {
		if err := update(t, e, s, f.A, profile.Update{MessageID: id}); !errors.Is(err, profile.ErrDuplicate) {
			t.Errorf("Update of A with message %s after the merge = %v; want ErrDuplicate", id, err)
		}
	}
	// B's ids are free again: B may be created afresh.
	mustUpdate(t, e, s, f.B, track(1, ev("m2", "b", 2)))
	if got := viewProfiles(t, e.ctx, s, f.B)[f.B]; got == nil || len(got.Events) != 1 || len(got.Traits) != 0 {
		t.Errorf("B created again after the merge = %+v; want one event and no traits", got)
	}
}

func profileMergeIsIdempotent(t *testing.T, e *env, s profile.Store) {
	f := seedProfiles(t, e, s)
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error { return tx.Merge(e.ctx, f.A, f.B) })
	after := f.view(t, e.ctx, s)
	// Replayed, in a new transaction and twice in one; and a source that never
	// existed.
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error { return tx.Merge(e.ctx, f.A, f.B) })
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		for i := 0; i < 2; i++ {
			if err := tx.Merge(e.ctx, f.A, f.B); err != nil {
				return err
			}
		}
		return tx.Merge(e.ctx, f.A, newPID())
	})
	if d := diff(after, f.view(t, e.ctx, s)); d != "" {
		t.Errorf("merging again changed the store (-before +after):\n%s", d)
	}
	// Twice in the transaction that does it first.
	g := seedProfiles(t, e, s)
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		if err := tx.Merge(e.ctx, g.A, g.B); err != nil {
			return err
		}
		return tx.Merge(e.ctx, g.A, g.B)
	})
	got := g.view(t, e.ctx, s)
	if got[g.B] != nil || got[g.A] == nil || len(got[g.A].Events) != 5 {
		t.Errorf("merging twice in one transaction: A %+v, B %+v; want A with 5 events and B gone", got[g.A], got[g.B])
	}
}

func profileMergeIntoMissing(t *testing.T, e *env, s profile.Store) {
	f := seedProfiles(t, e, s)
	missing := newPID()
	before := viewProfiles(t, e.ctx, s, append(f.pids, missing)...)
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	if err := tx.Merge(e.ctx, missing, f.A); !errors.Is(err, profile.ErrNotFound) {
		t.Errorf("Merge into a profile that does not exist = %v; want ErrNotFound", err)
	}
	commitAfterRefused(t, e.ctx, tx)
	if d := diff(before, viewProfiles(t, e.ctx, s, append(f.pids, missing)...)); d != "" {
		t.Errorf("a refused merge changed the store (-before +after):\n%s", d)
	}
}

func profileMergeIntoNew(t *testing.T, e *env, s profile.Store) {
	f := seedProfiles(t, e, s)
	n := newPID()
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		if err := tx.Update(e.ctx, n, profile.Update{Metadata: profile.Metadata{Version: 1}}); err != nil {
			return err
		}
		return tx.Merge(e.ctx, n, f.B)
	})
	got := viewProfiles(t, e.ctx, s, n, f.B)
	if got[f.B] != nil {
		t.Errorf("B still exists after being merged into a profile created in the same transaction")
	}
	if got[n] == nil {
		t.Fatal("the new profile is missing")
	}
	if d := diff([]string{"m2", "m4", "m5", "mx", "m3"}, messageIDs(got[n].Events)); d != "" {
		t.Errorf("events of the new profile (-want +got):\n%s", d)
	}
}

func profileDelete(t *testing.T, e *env, s profile.Store) {
	f := seedProfiles(t, e, s)
	before := f.view(t, e.ctx, s)
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error { return tx.Delete(e.ctx, f.B) })
	want := before
	want[f.B] = nil
	if d := diff(want, f.view(t, e.ctx, s)); d != "" {
		t.Errorf("the store after deleting B (-want +got):\n%s", d)
	}
	// Its recorded message ids went with it: B comes back fresh.
	again := track(1, ev("m2", "again", 8))
	mustUpdate(t, e, s, f.B, again)
	for _, id := range []string{"my", "mx", "m5"} {
		if err := update(t, e, s, f.B, profile.Update{MessageID: id, Metadata: again.Metadata}); err != nil {
			t.Errorf("Update of the recreated B with %s, a message of the deleted one: %v; want it accepted", id, err)
		}
	}
	got := viewProfiles(t, e.ctx, s, f.B)[f.B]
	if d := diff(&storedProfile{Meta: again.Metadata, Events: []profile.Event{*again.Event}}, got); d != "" {
		t.Errorf("B recreated after its deletion (-want +got):\n%s", d)
	}
}

// profileDeleteShreddedThenPurge checks profile.ShreddingTx and
// profile.Purger, on a store that has them: the profile is gone for every
// read from the commit on, whatever the purge has not done yet; Purge
// touches only what DeleteShredded left, and after it the profile id comes
// back fresh.
func profileDeleteShreddedThenPurge(t *testing.T, e *env, s profile.Store) {
	purger, ok := s.(profile.Purger)
	if !ok {
		t.Skip("the store is no profile.Purger")
	}
	f := seedProfiles(t, e, s)
	before := f.view(t, e.ctx, s)
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		shredding, ok := tx.(profile.ShreddingTx)
		if !ok {
			return errors.New("the store is a profile.Purger whose transactions are no profile.ShreddingTx")
		}
		return shredding.DeleteShredded(e.ctx, f.B)
	})
	want := before
	want[f.B] = nil
	if d := diff(want, f.view(t, e.ctx, s)); d != "" {
		t.Errorf("the store after DeleteShredded(B), before the purge (-want +got):\n%s", d)
	}
	for _, pids := range [][]identity.ProfileID{{f.A, f.C}, {f.B, f.B, newPID()}, nil} {
		if _, err := purger.Purge(e.ctx, pids); err != nil {
			t.Fatalf("Purge(%v): %v", pids, err)
		}
		if d := diff(want, f.view(t, e.ctx, s)); d != "" {
			t.Errorf("the store after Purge(%v) (-want +got):\n%s", pids, d)
		}
	}
	// Purged, B's recorded message ids are gone with it.
	again := track(1, ev("m2", "again", 8))
	mustUpdate(t, e, s, f.B, again)
	got := viewProfiles(t, e.ctx, s, f.B)[f.B]
	if d := diff(&storedProfile{Meta: again.Metadata, Events: []profile.Event{*again.Event}}, got); d != "" {
		t.Errorf("B recreated after its purge (-want +got):\n%s", d)
	}
}

func profileDeleteIsIdempotent(t *testing.T, e *env, s profile.Store) {
	f := seedProfiles(t, e, s)
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error { return tx.Delete(e.ctx, f.A) })
	after := f.view(t, e.ctx, s)
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		for _, pid := range []identity.ProfileID{f.A, newPID(), f.C, f.C} {
			if err := tx.Delete(e.ctx, pid); err != nil {
				return fmt.Errorf("Delete(%s): %w", pid, err)
			}
		}
		return nil
	})
	after[f.C] = nil
	if d := diff(after, f.view(t, e.ctx, s)); d != "" {
		t.Errorf("deleting again changed the store (-want +got):\n%s", d)
	}
}

func profileIDs(t *testing.T, e *env, s profile.Store) {
	pids := newPIDs(23)
	order := rand.Perm(len(pids))
	for _, i := range order { // created out of order
		mustUpdate(t, e, s, pids[i], profile.Update{Metadata: profile.Metadata{Version: 1}})
	}
	deleted := []identity.ProfileID{pids[0], pids[11], pids[22]}
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		for _, pid := range deleted {
			if err := tx.Delete(e.ctx, pid); err != nil {
				return err
			}
		}
		return nil
	})
	want := slices.DeleteFunc(slices.Clone(pids), func(p identity.ProfileID) bool { return slices.Contains(deleted, p) })
	for _, limit := range []int{1, 4, 20, 100} {
		var got []identity.ProfileID
		var after identity.ProfileID
		for pages := 0; ; pages++ {
			if pages > len(pids)+1 {
				t.Fatalf("IDs with limit %d: the pages do not end", limit)
			}
			page, err := s.IDs(e.ctx, after, limit)
			must(t, err, "IDs")
			if len(page) > limit {
				t.Fatalf("IDs(%q, %d) returned %d ids", after, limit, len(page))
			}
			got = append(got, page...)
			if len(page) < limit {
				break
			}
			after = page[len(page)-1]
		}
		if d := diff(want, got); d != "" {
			t.Errorf("paging through IDs %d at a time (-want +got):\n%s", limit, d)
		}
	}
	// After an id that is not stored (deleted, or between two stored ones).
	page, err := s.IDs(e.ctx, pids[11], 2)
	must(t, err, "IDs")
	if d := diff(pids[12:14], page); d != "" {
		t.Errorf("IDs after a deleted id (-want +got):\n%s", d)
	}
	page, err = s.IDs(e.ctx, pids[len(pids)-1], 5)
	must(t, err, "IDs")
	if len(page) != 0 {
		t.Errorf("IDs after the last id = %v; want none", page)
	}
	// Changes committed before a new scan starts are in it.
	late := newPID()
	mustUpdate(t, e, s, late, profile.Update{Metadata: profile.Metadata{Version: 1}})
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error { return tx.Delete(e.ctx, pids[5]) })
	got, err := s.IDs(e.ctx, "", 100)
	must(t, err, "IDs")
	want = append(slices.DeleteFunc(want, func(p identity.ProfileID) bool { return p == pids[5] }), late)
	if d := diff(want, got); d != "" {
		t.Errorf("IDs of a scan begun after a create and a delete (-want +got):\n%s", d)
	}
}

// profileHandedOverTraits: a transaction given an Update's traits map
// (profile.TraitsTaker; Update where it is none) may keep the map, but the
// values in it that are maps or slices stay the caller's, who may change
// them once the call returned.
func profileHandedOverTraits(t *testing.T, e *env, s profile.Store) {
	pid := newPID()
	address := map[string]any{"city": "Paris", "lines": []any{"1 rue", "2e"}}
	tags := []any{"a", map[string]any{"k": "v"}}
	u := profile.Update{Metadata: profile.Metadata{CreatedAt: at(1), UpdatedAt: at(1), Version: 1}, Set: map[string]profile.Trait{
		"address": {Value: address, Source: "web", UpdatedAt: at(1)},
		"tags":    {Value: tags, Source: "web", UpdatedAt: at(1)},
		"plan":    {Value: "pro", Source: "web", UpdatedAt: at(1)},
	}}
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	if taker, ok := tx.(profile.TraitsTaker); ok {
		must(t, taker.UpdateTakingSet(e.ctx, pid, u), "UpdateTakingSet")
	} else {
		must(t, tx.Update(e.ctx, pid, u), "Update")
	}
	address["city"], address["lines"].([]any)[0] = "scribbled", "scribbled"
	tags[1].(map[string]any)["k"] = "scribbled"
	// The transaction reads its write, then writes the profile again: the
	// commit keeps what both set.
	_, err = tx.Get(e.ctx, pid)
	must(t, err, "tx.Get")
	email := map[string]profile.Trait{"email": {Value: "p@example.com", Source: "web", UpdatedAt: at(2)}}
	must(t, tx.Update(e.ctx, pid, profile.Update{Metadata: profile.Metadata{CreatedAt: at(1), UpdatedAt: at(2), Version: 2}, Set: email}), "Update")
	email["email"] = profile.Trait{Value: "scribbled"}
	commitTx(t, e.ctx, tx)
	address["lines"].([]any)[1] = "scribbled"
	tags[0] = "scribbled"
	p, err := s.Get(e.ctx, pid)
	must(t, err, "Get")
	want := map[string]profile.Trait{
		"address": {Value: map[string]any{"city": "Paris", "lines": []any{"1 rue", "2e"}}, Source: "web", UpdatedAt: at(1)},
		"tags":    {Value: []any{"a", map[string]any{"k": "v"}}, Source: "web", UpdatedAt: at(1)},
		"plan":    {Value: "pro", Source: "web", UpdatedAt: at(1)},
		"email":   {Value: "p@example.com", Source: "web", UpdatedAt: at(2)},
	}
	if d := diff(want, p.Traits); d != "" {
		t.Errorf("changing the values of traits handed over changed the stored profile (-want +got):\n%s", d)
	}
}

func profileCopyAtBoundary(t *testing.T, e *env, s profile.Store) {
	pid := newPID()
	newUpdate := func() profile.Update {
		u := track(1, ev("m1", "a", 1))
		u.Set = map[string]profile.Trait{
			"address": {Value: map[string]any{"city": "Paris", "lines": []any{"1 rue", "2e"}}, Source: "web", UpdatedAt: at(1)},
			"tags":    {Value: []any{"a", map[string]any{"k": "v"}}, Source: "web", UpdatedAt: at(1)},
			"plan":    {Value: "pro", Source: "web", UpdatedAt: at(1)},
		}
		u.Remove = []string{"nothing"}
		return u
	}
	scribbleUpdate := func(u *profile.Update) {
		u.Set["address"].Value.(map[string]any)["city"] = "scribbled"
		u.Set["address"].Value.(map[string]any)["lines"].([]any)[0] = "scribbled"
		u.Set["tags"].Value.([]any)[1].(map[string]any)["k"] = "scribbled"
		u.Set["added"] = profile.Trait{Value: "scribbled"}
		delete(u.Set, "plan")
		if len(u.Remove) > 0 {
			u.Remove[0] = "plan" // a store keeping the slice would remove plan at Commit
		}
		u.Event.Name = "scribbled"
		u.Event.Properties["id"] = "scribbled"
		u.Event.Properties["nested"].(map[string]any)["list"].([]any)[0] = "scribbled"
		u.Metadata.Version = 99
		u.Metadata.Recipients[0].Name = "scribbled"
		u.Metadata.Recipients = append(u.Metadata.Recipients[:cap(u.Metadata.Recipients)], profile.Recipient{Name: "appended"})
	}
	scribbleProfile := func(p *profile.Profile) {
		for k, tr := range p.Traits {
			switch v := tr.Value.(type) {
			case map[string]any:
				v["city"] = "scribbled"
				if l, ok := v["lines"].([]any); ok {
					l[0] = "scribbled"
				}
			case []any:
				if m, ok := v[1].(map[string]any); ok {
					m["k"] = "scribbled"
				}
			}
			tr.Source = "scribbled"
			p.Traits[k] = tr
		}
		p.Traits["added"] = profile.Trait{Value: "scribbled"}
		if len(p.Metadata.Recipients) > 0 {
			p.Metadata.Recipients[0].Name = "scribbled"
		}
	}
	scribbleEvents := func(evs []profile.Event) {
		for i := range evs {
			evs[i].Name = "scribbled"
			evs[i].Properties["id"] = "scribbled"
			if n, ok := evs[i].Properties["nested"].(map[string]any); ok {
				n["list"].([]any)[0] = "scribbled"
			}
		}
	}
	orig := newUpdate()
	want := &storedProfile{Traits: orig.Set, Meta: orig.Metadata, Events: []profile.Event{*orig.Event}}

	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	u := newUpdate()
	must(t, tx.Update(e.ctx, pid, u), "Update")
	scribbleUpdate(&u) // what the caller passed in, after the call
	// What the transaction returns of its own writes.
	p, err := tx.Get(e.ctx, pid)
	must(t, err, "tx.Get")
	scribbleProfile(p)
	page, err := tx.Events(e.ctx, pid, profile.EventQuery{})
	must(t, err, "tx.Events")
	scribbleEvents(page.Events)
	meta, err := tx.Metadata(e.ctx, pid)
	must(t, err, "tx.Metadata")
	meta.Recipients[0].Name = "scribbled"
	if d := diff(want, viewProfiles(t, e.ctx, tx, pid)[pid]); d != "" {
		t.Errorf("changing what was passed to or returned by the transaction changed its staged profile (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewProfiles(t, e.ctx, s, pid)[pid]); d != "" {
		t.Errorf("changing what was passed to the transaction changed the stored profile (-want +got):\n%s", d)
	}
	// What the store returns.
	p, err = s.Get(e.ctx, pid)
	must(t, err, "Get")
	scribbleProfile(p)
	page, err = s.Events(e.ctx, pid, profile.EventQuery{})
	must(t, err, "Events")
	scribbleEvents(page.Events)
	meta, err = s.Metadata(e.ctx, pid)
	must(t, err, "Metadata")
	meta.Recipients[0].Name = "scribbled"
	// And after the Update is committed, what was passed in once more.
	u2 := newUpdate()
	u2.MessageID, u2.Event = "m2", ev("m2", "a", 2)
	u2.Remove = nil
	mustUpdate(t, e, s, pid, u2)
	scribbleUpdate(&u2)
	want.Events = append(want.Events, *ev("m2", "a", 2))
	if d := diff(want, viewProfiles(t, e.ctx, s, pid)[pid]); d != "" {
		t.Errorf("changing what the store returned, or what was passed in after Commit, changed the stored profile (-want +got):\n%s", d)
	}
}

func profileTxSeesOwnWrites(t *testing.T, e *env, s profile.Store) {
	f := seedProfiles(t, e, s)
	before := f.view(t, e.ctx, s)
	n := newPID()
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	created := track(1, ev("n1", "n", 1))
	must(t, tx.Update(e.ctx, n, created), "Update creating N")
	more := traitsUpdate(4, "m9", map[string]any{"plan": "pro"})
	must(t, tx.Update(e.ctx, f.A, more), "Update of A")
	must(t, tx.Merge(e.ctx, f.A, f.B), "Merge")
	must(t, tx.Delete(e.ctx, f.C), "Delete")
	// A message B recorded is A's now, within the transaction.
	if err := tx.Update(e.ctx, f.A, profile.Update{MessageID: "my"}); !errors.Is(err, profile.ErrDuplicate) {
		t.Errorf("Update of A with B's message, after the merge in the same transaction = %v; want ErrDuplicate", err)
	}
	wantA := &storedProfile{
		Traits: map[string]profile.Trait{},
		Meta:   more.Metadata,
		Events: []profile.Event{*ev("m1", "a", 1), *ev("m2", "b", 2), *ev("m3", "a", 3), *ev("m4", "b", 4), *ev("m5", "b", 5)},
	}
	for k, v := range before[f.A].Traits {
		wantA.Traits[k] = v
	}
	wantA.Traits["plan"] = more.Set["plan"]
	want := map[identity.ProfileID]*storedProfile{
		f.A: wantA, f.B: nil, f.C: nil,
		n: {Meta: created.Metadata, Events: []profile.Event{*created.Event}},
	}
	if d := diff(want, viewProfiles(t, e.ctx, tx, append(f.pids, n)...)); d != "" {
		t.Errorf("what the transaction reads of its own writes (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewProfiles(t, e.ctx, s, append(f.pids, n)...)); d != "" {
		t.Errorf("the store after Commit (-want +got):\n%s", d)
	}
}

// stageProfileWrites stages a write of every kind.
func stageProfileWrites(t *testing.T, e *env, tx profile.Tx, f *profileFixture, n identity.ProfileID) {
	t.Helper()
	must(t, tx.Update(e.ctx, n, track(1, ev("n1", "n", 1))), "Update creating N")
	must(t, tx.Update(e.ctx, f.A, traitsUpdate(4, "m9", map[string]any{"plan": "pro"})), "Update of A")
	must(t, tx.Merge(e.ctx, f.A, f.B), "Merge")
	must(t, tx.Delete(e.ctx, f.C), "Delete")
}

func profileUncommittedInvisible(t *testing.T, e *env, s profile.Store) {
	e.needIsolation(t)
	f := seedProfiles(t, e, s)
	n := newPID()
	pids := append(f.pids, n)
	before := viewProfiles(t, e.ctx, s, pids...)
	beforeIDs, err := s.IDs(e.ctx, "", 100)
	must(t, err, "IDs")
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	stageProfileWrites(t, e, tx, f, n)
	staged := viewProfiles(t, e.ctx, tx, pids...)

	readers := map[string]profile.Reader{"the store": s}
	other, ok := secondTx(t, e, s.Begin)
	if ok {
		readers["another transaction"] = other
	}
	for name, r := range readers {
		if d := diff(before, viewProfiles(t, e.ctx, r, pids...)); d != "" {
			t.Errorf("%s sees uncommitted writes (-committed +seen):\n%s", name, d)
		}
	}
	if ok {
		must(t, other.Rollback(e.ctx), "Rollback")
	}
	if got, err := s.IDs(e.ctx, "", 100); err != nil || diff(beforeIDs, got) != "" {
		t.Errorf("IDs lists uncommitted changes: %v, %v; want %v", got, err, beforeIDs)
	}
	commitTx(t, e.ctx, tx)
	later, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer later.Rollback(e.ctx)
	for name, r := range map[string]profile.Reader{"the store": s, "a new transaction": later} {
		if d := diff(staged, viewProfiles(t, e.ctx, r, pids...)); d != "" {
			t.Errorf("%s after Commit (-staged +seen):\n%s", name, d)
		}
	}
}

func profileRollbackDiscards(t *testing.T, e *env, s profile.Store) {
	st, n := profileStaging(t, e, s)
	st.checkRollbackDiscards(t, e)
	// The message ids it staged were not recorded.
	if err := update(t, e, s, n, profile.Update{MessageID: "n1"}); err != nil {
		t.Errorf("Update with a message id of a rolled back transaction = %v; want nil", err)
	}
}

// profileStaging seeds the fixture for the shared transaction checks, and
// returns the profile the writes create.
func profileStaging(t *testing.T, e *env, s profile.Store) (staging[profile.Reader, profile.Tx, map[identity.ProfileID]*storedProfile], identity.ProfileID) {
	f := seedProfiles(t, e, s)
	n := newPID()
	pids := append(f.pids, n)
	return staging[profile.Reader, profile.Tx, map[identity.ProfileID]*storedProfile]{
		store: s, begin: s.Begin, errDone: profile.ErrTxDone,
		stage: func(tx profile.Tx) { stageProfileWrites(t, e, tx, f, n) },
		view: func(r profile.Reader) map[identity.ProfileID]*storedProfile {
			return viewProfiles(t, e.ctx, r, pids...)
		},
		calls: func(tx profile.Tx) []txMethod {
			return []txMethod{
				{"Get", func(ctx context.Context) error { _, err := tx.Get(ctx, f.A); return err }},
				{"Update", func(ctx context.Context) error { return tx.Update(ctx, newPID(), profile.Update{}) }},
			}
		},
	}, n
}

func profileRollbackAfterCommit(t *testing.T, e *env, s profile.Store) {
	f := seedProfiles(t, e, s)
	n := newPID()
	pids := append(f.pids, n)
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	stageProfileWrites(t, e, tx, f, n)
	commitTx(t, e.ctx, tx)
	after := viewProfiles(t, e.ctx, s, pids...)
	if err := tx.Rollback(e.ctx); err != nil {
		t.Errorf("Rollback after Commit = %v; want nil", err)
	}
	if d := diff(after, viewProfiles(t, e.ctx, s, pids...)); d != "" {
		t.Errorf("Rollback after Commit undid the commit (-committed +after):\n%s", d)
	}
}

func profileTxDone(t *testing.T, e *env, s profile.Store) {
	for _, how := range []string{"Commit", "Rollback"} {
		f := seedProfiles(t, e, s)
		n := newPID()
		tx, err := s.Begin(e.ctx)
		must(t, err, "Begin")
		must(t, tx.Update(e.ctx, n, track(1, ev("n1", "n", 1))), "Update")
		if how == "Commit" {
			commitTx(t, e.ctx, tx)
		} else {
			must(t, tx.Rollback(e.ctx), "Rollback")
		}
		late := newPID()
		pids := append(f.pids, n, late)
		before := viewProfiles(t, e.ctx, s, pids...)
		checkDone(t, e.ctx, how, tx, profile.ErrTxDone, []txMethod{
			{"Get", func(ctx context.Context) error { _, err := tx.Get(ctx, f.A); return err }},
			{"Metadata", func(ctx context.Context) error { _, err := tx.Metadata(ctx, f.A); return err }},
			{"Events", func(ctx context.Context) error { _, err := tx.Events(ctx, f.A, profile.EventQuery{}); return err }},
			{"Update", func(ctx context.Context) error { return tx.Update(ctx, late, track(1, ev("l1", "l", 1))) }},
			{"Merge", func(ctx context.Context) error { return tx.Merge(ctx, f.A, f.B) }},
			{"Delete", func(ctx context.Context) error { return tx.Delete(ctx, f.C) }},
		})
		if d := diff(before, viewProfiles(t, e.ctx, s, pids...)); d != "" {
			t.Errorf("calls on a transaction ended by %s changed the store (-before +after):\n%s", how, d)
		}
	}
}

func profileCancelledCommit(t *testing.T, e *env, s profile.Store) {
	st, _ := profileStaging(t, e, s)
	st.checkCancelledCommit(t, e)
}

func profileConcurrentWriters(t *testing.T, e *env, s profile.Store) {
	pids := newPIDs(2 * writers)
	errs := parallel(writers, func(w int) error {
		for i := 0; i < txsPerWriter; i++ {
			pid := pids[2*w+i%2]
			version := uint64(i/2 + 1)
			id := fmt.Sprintf("w%d-%d", w, i)
			// Readers run alongside the writers.
			if _, err := s.Events(e.ctx, pids[(2*w+2)%len(pids)], profile.EventQuery{}); err != nil && !errors.Is(err, profile.ErrNotFound) {
				return err
			}
			if _, err := s.IDs(e.ctx, "", 5); err != nil {
				return err
			}
			tx, err := s.Begin(e.ctx)
			if err != nil {
				return err
			}
			u := track(version, ev(id, "e", i))
			u.Set = map[string]profile.Trait{"writer": {Value: float64(w), Source: "w", UpdatedAt: at(i)}}
			err = tx.Update(e.ctx, pid, u)
			if err == nil {
				err = tx.Commit(e.ctx)
			}
			if err != nil {
				_ = tx.Rollback(e.ctx)
				return errf("update %s: %w", id, err)
			}
		}
		return nil
	})
	reportAll(t, errs)
	for i, pid := range pids {
		w := i / 2
		got := viewProfiles(t, e.ctx, s, pid)[pid]
		if got == nil {
			t.Errorf("profile of writer %d is missing", w)
			continue
		}
		if len(got.Events) != txsPerWriter/2 || got.Meta.Version != uint64(txsPerWriter/2) || got.Traits["writer"].Value != float64(w) {
			t.Errorf("profile %d of writer %d: %d events, version %d, traits %v; want %d events, version %d, writer %d",
				i%2, w, len(got.Events), got.Meta.Version, got.Traits, txsPerWriter/2, txsPerWriter/2, w)
		}
	}
	ids, err := s.IDs(e.ctx, "", 1000)
	must(t, err, "IDs")
	if d := diff(pids, ids); d != "" {
		t.Errorf("IDs after the concurrent writers (-want +got):\n%s", d)
	}
}

// profilePickTraits checks the optional profile.TraitPicker: the named values in
// order, nil for a missing trait, the caller's own copies, the transaction's own
// writes seen, ErrNotFound for an unknown profile.
func profilePickTraits(t *testing.T, e *env, s profile.Store) {
	pid := newPID()
	u := profile.Update{Metadata: profile.Metadata{CreatedAt: at(0), UpdatedAt: at(5), Version: 1}}
	u.Set = map[string]profile.Trait{
		"plan": {Value: "pro", Source: "web", UpdatedAt: at(5)},
		"tags": {Value: []any{"a", map[string]any{"k": 1.0}}, Source: "web", UpdatedAt: at(5)},
	}
	mustUpdate(t, e, s, pid, u)
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	picker, ok := tx.(profile.TraitPicker)
	if !ok {
		t.Skip("the transaction does not implement the optional profile.TraitPicker")
	}
	got, err := picker.PickTraits(e.ctx, pid, []string{"tags", "missing", "plan"}, []any{"kept"})
	must(t, err, "PickTraits")
	want := []any{"kept", []any{"a", map[string]any{"k": 1.0}}, nil, "pro"}
	if d := diff(want, got); d != "" {
		t.Errorf("PickTraits appended (-want +got):\n%s", d)
	}
	got[1].([]any)[0] = "changed" // the caller's own
	again, err := picker.PickTraits(e.ctx, pid, []string{"tags"}, nil)
	must(t, err, "PickTraits")
	if d := diff([]any{[]any{"a", map[string]any{"k": 1.0}}}, again); d != "" {
		t.Errorf("changing what PickTraits returned changed the store (-want +got):\n%s", d)
	}
	if none, err := picker.PickTraits(e.ctx, pid, nil, nil); err != nil || len(none) != 0 {
		t.Errorf("PickTraits of no names = %v, %v; want nothing", none, err)
	}
	if _, err := picker.PickTraits(e.ctx, newPID(), []string{"plan"}, nil); !errors.Is(err, profile.ErrNotFound) {
		t.Errorf("PickTraits of an unknown profile = %v, want ErrNotFound", err)
	}
	u2 := profile.Update{Metadata: u.Metadata, Set: map[string]profile.Trait{"plan": {Value: "free", Source: "web", UpdatedAt: at(6)}}}
	u2.Metadata.Version++
	must(t, tx.Update(e.ctx, pid, u2), "Update")
	if got, err := picker.PickTraits(e.ctx, pid, []string{"plan"}, nil); err != nil || len(got) != 1 || got[0] != "free" {
		t.Errorf("after the transaction's own update, PickTraits = %v, %v; want [free]", got, err)
	}
}
