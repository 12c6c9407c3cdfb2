package sqlstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
)

// The canaries: values planted in one person's data, each of a kind the
// library must never keep outside the person's own data, nor write to a log
// or an error.
var canaries = map[string]string{
	"user id":               "cnry-uid-4f1",
	"email":                 "cnry-mail-4f1@example.com",
	"nested trait":          "cnry-street-4f1",
	"event property":        "cnry-prop-4f1",
	"message id":            "cnry-msg-4f1",
	"rectified value":       "cnry-rect-4f1",
	"refused value":         "9007199254740993",
	"failed rectification":  "cnry-fail-4f1",
	"destination's quote":   "cnry-dest-4f1",
	"nested key":            "cnry-key-4f1",
	"identifier of another": "cnry-other-4f1",
}

// quotingDest fails its first calls with errors that quote what it was
// sent, as a careless destination does, then takes everything.
type quotingDest struct {
	fails atomic.Int32
}

func (d *quotingDest) Name() string { return "quoting" }

func (d *quotingDest) Send(_ context.Context, msgs []destination.Message) error {
	if d.fails.Add(1) <= 2 {
		return fmt.Errorf("400: rejected %+v (%s)", msgs, canaries["destination's quote"])
	}
	return nil
}

func (d *quotingDest) Delete(_ context.Context, del destination.Deletion) error {
	if d.fails.Add(1) <= 4 {
		return fmt.Errorf("cannot delete %v yet (%s)", del.IDs, canaries["destination's quote"])
	}
	return nil
}

// quotingProfiles fails Begin, while failing is set, with an error that
// quotes a value, as a database driver's may.
type quotingProfiles struct {
	sealingStore
	failing atomic.Bool
}

func (p *quotingProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	if p.failing.Load() {
		return nil, fmt.Errorf("pq: value %q violates check constraint; key (email)=(%s) exists", canaries["failed rectification"], canaries["identifier of another"])
	}
	return p.sealingStore.Begin(ctx)
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCanariesGoNowhereElse plants canary values in a person's data, runs
// every right and failure path over them (a destination and a backend whose
// errors quote the data, a refused value, a failed request), erases the
// person, then searches receipts, the journal, the audit log, the logs, the
// errors returned, and every table of the database: no canary may be
// anywhere.
func TestCanariesGoNowhereElse(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t, d.dialect)
			p := s.open(t)
			ctx := t.Context()
			logs := &lockedBuffer{}
			profiles := &quotingProfiles{sealingStore: profilesOf(p.data)}
			c := p.controller(t, profiles, privacy.WithDestinations(&quotingDest{}),
				privacy.WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
				privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Poll: 5 * time.Millisecond}))
			var errs []string
			keep := func(err error) error {
				if err != nil {
					errs = append(errs, err.Error(), fmt.Sprintf("%+v", err))
				}
				return err
			}
			uid := identity.ID{Type: identity.TypeUserID, Value: canaries["user id"]}
			now := time.Now()
			must(t, keep(c.Collect(ctx, privacy.Identify{MessageID: canaries["message id"] + "-1", UserID: uid.Value, Timestamp: now,
				Traits: map[string]any{"email": canaries["email"], "address": map[string]any{"street": canaries["nested trait"], canaries["nested key"]: 1}}})))
			must(t, keep(c.Collect(ctx, privacy.Track{MessageID: canaries["message id"] + "-2", UserID: uid.Value, Event: "Order Completed", Timestamp: now,
				Properties: map[string]any{"card": canaries["event property"]}})))
			// Bad input that quotes values, refused.
			keep(c.Collect(ctx, privacy.Track{UserID: uid.Value, Event: "E", Timestamp: now, Properties: map[string]any{"n": json.Number(canaries["refused value"])}}))
			keep(c.Collect(ctx, privacy.Identify{UserID: uid.Value, Timestamp: now, Traits: map[string]any{"big": uint64(9007199254740993)}}))

			var ids []string
			receipt := func(r *privacy.Receipt, err error) {
				keep(err)
				if r != nil {
					ids = append(ids, r.ID)
				}
			}
			receipt(c.Rectify(ctx, uid, map[string]any{"address": map[string]any{"street": canaries["rectified value"]}}))
			receipt(c.Rectify(ctx, uid, map[string]any{"score": uint64(9007199254740993)}))
			receipt(c.Rectify(ctx, uid, map[string]any{"children": map[string]any{canaries["nested key"]: uint64(9007199254740993)}}))
			receipt(c.Rectify(ctx, identity.ID{Type: identity.TypeEmail, Value: canaries["identifier of another"] + "@example.com"}, map[string]any{"plan": "x"}))
			profiles.failing.Store(true)
			receipt(c.Rectify(ctx, uid, map[string]any{"plan": canaries["failed rectification"]}))
			keep(c.Collect(ctx, privacy.Identify{UserID: uid.Value, Timestamp: now, Traits: map[string]any{"plan": canaries["failed rectification"]}}))
			keep(c.CollectBatch(ctx, []privacy.Message{privacy.Identify{UserID: uid.Value, Timestamp: now, Traits: map[string]any{"plan": canaries["failed rectification"]}}}))
			profiles.failing.Store(false)
			receipt(c.Suppress(ctx, uid))
			receipt(c.Unsuppress(ctx, uid))
			var buf bytes.Buffer
			receipt(c.Export(ctx, uid, &buf, export.JSON))
			must(t, keep(c.Flush(ctx)))
			receipt(c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{uid}}))
			deadline := time.Now().Add(30 * time.Second)
			for {
				must(t, keep(c.Flush(ctx)))
				r, err := c.Status(ctx, ids[len(ids)-1])
				must(t, err)
				if r.Status == privacy.Finished {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the erasure is %s after 30 s: %+v", r.Status, r)
				}
				time.Sleep(10 * time.Millisecond)
			}

			// Where the canaries must not be.
			places := map[string]string{"logs": logs.String(), "errors": strings.Join(errs, "\n")}
			for _, id := range ids {
				r, err := c.Status(ctx, id)
				must(t, err)
				b, _ := json.Marshal(r)
				places["receipt "+id] = string(b)
			}
			for f := (journal.Filter{Limit: 1000}); ; {
				page, err := p.jrnl.Journal().List(ctx, f)
				must(t, err)
				for _, e := range page.Entries {
					b, _ := json.Marshal(e)
					places["journal entry "+e.ID] = string(b)
				}
				if f.Cursor = page.Next; f.Cursor == "" {
					break
				}
			}
			recs, err := p.jrnl.AuditLog().Records(ctx, 0, 10000)
			must(t, err)
			b, _ := json.Marshal(recs)
			places["audit log"] = string(b)
			for what, canary := range canaries {
				for place, text := range places {
					if strings.Contains(text, canary) {
						t.Errorf("the %s (%s) is in the %s: %s", what, canary, place, around(text, canary))
					}
				}
				if tables := s.holders(t, canary); len(tables) > 0 {
					t.Errorf("the %s (%s) is in the tables %v after the erasure", what, canary, tables)
				}
			}
		})
	}
}

// around returns text about needle, for a failure message.
func around(text, needle string) string {
	i := strings.Index(text, needle)
	return text[max(0, i-120):min(len(text), i+len(needle)+60)]
}

type quotingReader struct {
	sealingStore
	failing bool
}

const readCanary = "cnry-read-77"

func (q *quotingReader) err() error {
	return fmt.Errorf("pq: invalid input value %q for column (email)", readCanary)
}
func (q *quotingReader) Get(ctx context.Context, pid identity.ProfileID) (*profile.Profile, error) {
	if q.failing {
		return nil, q.err()
	}
	return q.sealingStore.Get(ctx, pid)
}
func (q *quotingReader) Events(ctx context.Context, pid identity.ProfileID, qu profile.EventQuery) (profile.EventPage, error) {
	if q.failing {
		return profile.EventPage{}, q.err()
	}
	return q.sealingStore.Events(ctx, pid, qu)
}
func (q *quotingReader) Metadata(ctx context.Context, pid identity.ProfileID) (profile.Metadata, error) {
	if q.failing {
		return profile.Metadata{}, q.err()
	}
	return q.sealingStore.Metadata(ctx, pid)
}
func (q *quotingReader) IDs(ctx context.Context, after identity.ProfileID, limit int) ([]identity.ProfileID, error) {
	if q.failing {
		return nil, q.err()
	}
	return q.sealingStore.IDs(ctx, after, limit)
}

// TestReadPathsKeepNoBackendText: with a profile store whose reads fail with
// errors quoting a value, every read path and the collection paths return,
// log and keep the error by its kind only.
func TestReadPathsKeepNoBackendText(t *testing.T) {
	s := newSite(t, sqlstore.SQLite)
	p := s.open(t)
	ctx := t.Context()
	logs := &lockedBuffer{}
	qr := &quotingReader{sealingStore: profilesOf(p.data)}
	c := p.controller(t, qr, privacy.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	uid := identity.ID{Type: identity.TypeUserID, Value: "u-read"}
	must(t, c.Collect(ctx, privacy.Identify{UserID: uid.Value, Timestamp: time.Now(), Traits: map[string]any{"plan": "a"}}))
	must(t, c.DefineAudience(ctx, audience.Definition{Key: "planners", Query: `trait('plan') = 'a'`}))
	var err error
	qr.failing = true
	var errs []string
	keep := func(what string, err error) {
		if err != nil {
			errs = append(errs, what+": "+err.Error())
		}
	}
	_, err = c.Profile(ctx, uid)
	keep("Profile", err)
	_, err = c.Metadata(ctx, uid)
	keep("Metadata", err)
	_, err = c.Events(ctx, uid, profile.EventQuery{})
	keep("Events", err)
	_, err = c.Access(ctx, uid)
	keep("Access", err)
	var sb strings.Builder
	_, err = c.Export(ctx, uid, &sb, export.JSON)
	keep("Export", err)
	_, err = c.Refresh(ctx)
	keep("Refresh", err)
	keep("Collect", c.Collect(ctx, privacy.Identify{UserID: uid.Value, Timestamp: time.Now(), Traits: map[string]any{"plan": "b"}}))
	keep("CollectBatch", c.CollectBatch(ctx, []privacy.Message{privacy.Identify{UserID: uid.Value, Timestamp: time.Now(), Traits: map[string]any{"plan": "c"}}}))
	_, err = c.Rectify(ctx, uid, map[string]any{"plan": "d"})
	keep("Rectify", err)
	_, err = c.Recover(ctx)
	keep("Recover", err)
	if len(errs) < 5 { // the reads; collection reads in its transactions
		t.Errorf("only %d calls failed with the failing reads: %v", len(errs), errs)
	}
	places := map[string]string{"errors": strings.Join(errs, "\n"), "logs": logs.String()}
	page, err := p.jrnl.Journal().List(ctx, journal.Filter{Limit: 1000})
	must(t, err)
	for _, e := range page.Entries {
		b, _ := json.Marshal(e)
		places["journal "+e.ID] = string(b)
	}
	recs, err := p.jrnl.AuditLog().Records(ctx, 0, 10000)
	must(t, err)
	b, _ := json.Marshal(recs)
	places["audit log"] = string(b)
	for place, text := range places {
		if strings.Contains(text, readCanary) {
			t.Errorf("the quoted value is in the %s: %s", place, around(text, readCanary))
		}
	}
}

// TestRefusalTextIsBounded: a rectification naming a trait far longer than
// allowed is refused with a text of bounded length: the receipt, the
// journal and the append-only audit log keep no more than a short name.
func TestRefusalTextIsBounded(t *testing.T) {
	s := newSite(t, sqlstore.SQLite)
	p := s.open(t)
	ctx := t.Context()
	c := p.controller(t, nil)
	uid := identity.ID{Type: identity.TypeUserID, Value: "u-long"}
	must(t, c.Collect(ctx, privacy.Identify{UserID: uid.Value, Timestamp: time.Now(), Traits: map[string]any{"plan": "a"}}))
	for _, traits := range []map[string]any{
		{strings.Repeat("k", 4<<20): "x"},
		{"nested": map[string]any{strings.Repeat("k", 4<<20): uint64(1 << 60)}},
	} {
		r, err := c.Rectify(ctx, uid, traits)
		if !errors.Is(err, privacy.ErrInvalid) || r == nil || len(r.Reason) > 1024 || len(err.Error()) > 1024 {
			t.Errorf("a refused rectification with a 4 MiB name: %d-byte reason, %v; want INVALID in under 1 KiB", len(r.Reason), err)
		}
	}
	recs, err := p.jrnl.AuditLog().Records(ctx, 0, 10000)
	must(t, err)
	for _, rec := range recs {
		if len(rec.Detail) > 1024 {
			t.Errorf("audit record %d keeps a %d-byte detail", rec.Seq, len(rec.Detail))
		}
	}
}
