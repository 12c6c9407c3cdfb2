package sqlstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/sqlstore"
)

// edgeInput is one message at the edge of what is taken, about its own
// person (user).
type edgeInput struct {
	name string
	user string
	msg  func(user string, now time.Time) privacy.Message
}

var edgeInputs = []edgeInput{
	{"NUL in the user id", "nul-id", func(u string, now time.Time) privacy.Message {
		return privacy.Track{UserID: u + "\x00", Event: "E", Timestamp: now}
	}},
	{"NUL in the event name", "nul-event", func(u string, now time.Time) privacy.Message {
		return privacy.Track{UserID: u, Event: "E\x00", Timestamp: now}
	}},
	{"NUL in the message id", "nul-msgid", func(u string, now time.Time) privacy.Message {
		return privacy.Track{MessageID: "m\x00", UserID: u, Event: "E", Timestamp: now}
	}},
	{"NUL in the source", "nul-source", func(u string, now time.Time) privacy.Message {
		return privacy.Identify{UserID: u, Source: "s\x00", Timestamp: now}
	}},
	{"NUL in a trait name", "nul-trait-key", func(u string, now time.Time) privacy.Message {
		return privacy.Identify{UserID: u, Traits: map[string]any{"a\x00": 1}, Timestamp: now}
	}},
	{"NUL in a trait value", "nul-trait-value", func(u string, now time.Time) privacy.Message {
		return privacy.Identify{UserID: u, Traits: map[string]any{"note": "x\x00y", "nested": map[string]any{"k\x00": "v"}}, Timestamp: now}
	}},
	{"NUL in a property", "nul-property", func(u string, now time.Time) privacy.Message {
		return privacy.Track{UserID: u, Event: "E", Properties: map[string]any{"p": "a\x00b", "m": map[string]any{"k\x00": 1}}, Timestamp: now}
	}},
	{"a timestamp in year 10000", "year-10000", func(u string, now time.Time) privacy.Message {
		return privacy.Identify{UserID: u, Traits: map[string]any{"plan": "future"}, Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	}},
	{"a timestamp in year 293000", "year-293000", func(u string, now time.Time) privacy.Message {
		return privacy.Track{UserID: u, Event: "E", Timestamp: time.Date(293000, 1, 1, 0, 0, 0, 0, time.UTC)}
	}},
	{"a timestamp in year 0", "year-0", func(u string, now time.Time) privacy.Message {
		return privacy.Track{UserID: u, Event: "E", Timestamp: time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC)}
	}},
	{"a timestamp in year 1", "year-1", func(u string, now time.Time) privacy.Message {
		return privacy.Track{UserID: u, Event: "E", Timestamp: time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC)}
	}},
	{"301 properties", "many-properties", func(u string, now time.Time) privacy.Message {
		props := map[string]any{}
		for i := range 301 {
			props[fmt.Sprint("p", i)] = i
		}
		return privacy.Track{UserID: u, Event: "E", Properties: props, Timestamp: now}
	}},
	{"a 40 KB trait", "big-trait", func(u string, now time.Time) privacy.Message {
		return privacy.Identify{UserID: u, Traits: map[string]any{"bio": strings.Repeat("x", 40<<10)}, Timestamp: now}
	}},
	{"a message id of 101 bytes", "long-msgid", func(u string, now time.Time) privacy.Message {
		return privacy.Track{MessageID: strings.Repeat("m", 101), UserID: u, Event: "E", Timestamp: now}
	}},
	{"year 1 exactly", "y1-exact", func(u string, now time.Time) privacy.Message {
		return privacy.Track{UserID: u, Event: "E", Timestamp: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)}
	}},
	{"year 1 exactly, local zone +14", "y1-zone", func(u string, now time.Time) privacy.Message {
		return privacy.Track{UserID: u, Event: "E", Timestamp: time.Date(1, 1, 1, 14, 0, 0, 1000, time.FixedZone("x", 14*3600))}
	}},
	{"3000 external ids", "many-ext", func(u string, now time.Time) privacy.Message {
		ext := make([]identity.ID, 3000)
		for i := range ext {
			ext[i] = identity.ID{Type: "x", Value: fmt.Sprint(u, i)}
		}
		return privacy.Identify{UserID: u, ExternalIDs: ext, Timestamp: now}
	}},
	{"3000 external ids of many types", "many-ext-types", func(u string, now time.Time) privacy.Message {
		ext := make([]identity.ID, 3000)
		for i := range ext {
			ext[i] = identity.ID{Type: fmt.Sprint("t", i), Value: "v"}
		}
		return privacy.Identify{UserID: u, ExternalIDs: ext, Timestamp: now}
	}},
	{"a negative zero and extreme floats", "floats", func(u string, now time.Time) privacy.Message {
		return privacy.Identify{UserID: u, Traits: map[string]any{"nz": math.Copysign(0, -1), "max": 1.7976931348623157e308, "tiny": 5e-324}, Timestamp: now}
	}},
	{"a trait value with U+FFFF and U+2028", "oddrunes", func(u string, now time.Time) privacy.Message {
		return privacy.Identify{UserID: u, Traits: map[string]any{"s": "a\uffff\u2028b\\u0000"}, Timestamp: now}
	}},
	{"an escaped-NUL-looking key", "nulkey", func(u string, now time.Time) privacy.Message {
		return privacy.Track{UserID: u, Event: "E", Properties: map[string]any{"\\u0000": "x"}, Timestamp: now}
	}},
	{"a message 100 ms past the skew", "future", func(u string, now time.Time) privacy.Message {
		return privacy.Identify{UserID: u, Traits: map[string]any{"plan": "f"}, Timestamp: now.Add(5*time.Minute + 100*time.Millisecond)}
	}},
}

// TestEdgeInputsAgreeAcrossBackends: the same message gets the same answer
// in memory, on SQLite and on PostgreSQL (an error, the same, or nothing),
// and a person whose message was taken exports in every format on each.
// (A review found a NUL accepted in memory and refused by PostgreSQL with an
// error of its own, and years past 9999 accepted, after which the person's
// Export failed in every format.)
func TestEdgeInputsAgreeAcrossBackends(t *testing.T) {
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Second)
	clock := privacy.WithClock(func() time.Time { return now })
	mem, err := privacy.New(privacy.WithKey(testKey), clock)
	must(t, err)
	defer mem.Close()
	controllers := map[string]*privacy.Controller{"memory": mem}
	for _, d := range testDialects {
		if d.dialect == sqlstore.Postgres && os.Getenv(postgresEnv) == "" {
			t.Logf("PostgreSQL left out: %s is not set", postgresEnv)
			continue
		}
		controllers[d.name] = newSite(t, d.dialect).open(t).controller(t, nil, clock)
	}
	for _, in := range edgeInputs {
		answers := map[string]string{}
		for name, c := range controllers {
			answer := "taken"
			if err := c.Collect(ctx, in.msg(in.user, now)); err != nil {
				answer = err.Error()
			}
			answers[name] = answer
		}
		if answers["memory"] != answers["sqlite"] || (answers["postgres"] != "" && answers["postgres"] != answers["memory"]) {
			t.Errorf("%s: the backends answer differently: %q", in.name, answers)
			continue
		}
		if answers["memory"] != "taken" {
			if !strings.Contains(answers["memory"], "privacy: invalid") {
				t.Errorf("%s: refused with %q; want ErrInvalid naming the field", in.name, answers["memory"])
			}
			continue
		}
		for name, c := range controllers {
			id := identity.ID{Type: identity.TypeUserID, Value: in.user}
			if _, err := c.Access(ctx, id); err != nil {
				t.Errorf("%s on %s: Access = %v", in.name, name, err)
			}
			for _, f := range []export.Format{export.JSON, export.NDJSON, export.CSV} {
				var buf bytes.Buffer
				if _, err := c.Export(ctx, id, &buf, f); err != nil || buf.Len() == 0 {
					t.Errorf("%s on %s: Export %s = %v (%d bytes)", in.name, name, f, err, buf.Len())
				}
			}
			if p, err := c.Profile(ctx, id); err != nil || p.Metadata.LastSeen.After(now) {
				t.Errorf("%s on %s: profile %v last seen %v; want it not after the clock's %v", in.name, name, err, p, now)
			}
		}
	}
	// What each answer is, in memory, as a user sees it.
	want := map[string]bool{ // taken?
		"NUL in the user id": false, "NUL in the event name": false, "NUL in the message id": false,
		"NUL in the source": false, "NUL in a trait name": false, "NUL in a trait value": true,
		"NUL in a property": true, "a timestamp in year 10000": true, "a timestamp in year 293000": true,
		"a timestamp in year 0": false, "a timestamp in year 1": true, "301 properties": false,
		"a 40 KB trait": false, "a message id of 101 bytes": false,
		// "year 1 exactly" is the zero time: no timestamp, so the time received.
		"year 1 exactly": true, "year 1 exactly, local zone +14": true, "3000 external ids": false,
		"3000 external ids of many types": false, "a negative zero and extreme floats": true,
		"a trait value with U+FFFF and U+2028": true, "an escaped-NUL-looking key": true,
		"a message 100 ms past the skew": true,
	}
	for _, in := range edgeInputs {
		err := mem.Collect(ctx, in.msg(in.user+"-again", now))
		if taken := err == nil; taken != want[in.name] {
			t.Errorf("%s: Collect = %v; want taken %v", in.name, err, want[in.name])
		}
	}
}

// TestAccessOfAPersonWithManyIdentifiers: a person linked to more identifiers
// than a journal filter names (sqlstore takes 500) gets Access and Export on
// every backend, their requests listed once each. (Both failed on SQLite and
// PostgreSQL with 600.)
func TestAccessOfAPersonWithManyIdentifiers(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := newSite(t, d.dialect).open(t).controller(t, nil)
			ext := make([]identity.ID, 600)
			for i := range ext {
				ext[i] = identity.ID{Type: fmt.Sprint("t", i), Value: "v"}
			}
			must(t, c.Collect(ctx, privacy.Identify{UserID: "u-many", ExternalIDs: ext, Timestamp: time.Now()}))
			id := identity.ID{Type: identity.TypeUserID, Value: "u-many"}
			// A request naming identifiers on both sides of the 500th.
			r, err := c.Rectify(ctx, identity.ID{Type: "t599", Value: "v"}, map[string]any{"plan": "pro"})
			if err != nil || r.Status != privacy.Finished {
				t.Fatalf("Rectify = %+v, %v", r, err)
			}
			pkg, err := c.Access(ctx, id)
			if err != nil {
				t.Fatalf("Access = %v", err)
			}
			if len(pkg.Profile.ExternalIDs) != 601 || len(pkg.Requests) != 1 || pkg.Requests[0].ID != r.ID {
				t.Errorf("Access: %d identifiers, requests %+v; want 601 and the rectification once", len(pkg.Profile.ExternalIDs), pkg.Requests)
			}
			var buf bytes.Buffer
			if _, err := c.Export(ctx, id, &buf, export.NDJSON); err != nil {
				t.Errorf("Export = %v", err)
			}
		})
	}
}

// TestTextInputsAgreeAcrossBackends: text PostgreSQL cannot store (a NUL,
// invalid UTF-8) in a request id, an extension's reason, a destination's name
// or an audience query is answered alike in memory, on SQLite and on
// PostgreSQL, before any backend sees it; an extension's reason is bounded.
func TestTextInputsAgreeAcrossBackends(t *testing.T) {
	ctx := t.Context()
	mem, err := privacy.New(privacy.WithKey(testKey))
	must(t, err)
	defer mem.Close()
	controllers := map[string]*privacy.Controller{"memory": mem}
	for _, d := range testDialects {
		if d.dialect == sqlstore.Postgres && os.Getenv(postgresEnv) == "" {
			continue
		}
		controllers[d.name] = newSite(t, d.dialect).open(t).controller(t, nil)
	}
	for name, c := range controllers {
		must(t, c.Collect(ctx, privacy.Identify{UserID: "ada", Timestamp: time.Now()}))
		r, err := c.Suppress(ctx, identity.ID{Type: identity.TypeUserID, Value: "ada"})
		must(t, err)
		for what, call := range map[string]struct {
			err  error
			call func() error
		}{
			"Status of an id with a NUL":       {privacy.ErrNotFound, func() error { _, err := c.Status(ctx, "req_\x00"); return err }},
			"Status of an id of invalid UTF-8": {privacy.ErrNotFound, func() error { _, err := c.Status(ctx, "req_\xff"); return err }},
			"Extend with a NUL in the reason":  {privacy.ErrInvalid, func() error { _, err := c.Extend(ctx, r.ID, 1, "busy \x00"); return err }},
			"Extend with invalid UTF-8":        {privacy.ErrInvalid, func() error { _, err := c.Extend(ctx, r.ID, 1, "busy \xff"); return err }},
			"Extend with a 2 KiB reason":       {privacy.ErrInvalid, func() error { _, err := c.Extend(ctx, r.ID, 1, strings.Repeat("r", 2048)); return err }},
			"DeadLetters of a NUL name":        {privacy.ErrInvalid, func() error { _, err := c.DeadLetters(ctx, "d\x00", 0, 10); return err }},
			"an audience query with a NUL": {privacy.ErrInvalid, func() error {
				return c.DefineAudience(ctx, audience.Definition{Key: "nul", Query: "trait('plan') = 'a\x00b'"})
			}},
		} {
			if err := call.call(); !errors.Is(err, call.err) {
				t.Errorf("%s: %s = %v; want %v", name, what, err, call.err)
			}
		}
		if got, err := c.Status(ctx, r.ID); err != nil || got.ExtensionReason != "" {
			t.Errorf("%s: the refused extensions changed the request: %+v, %v", name, got, err)
		}
	}
}
