package privacy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// limitedController is a Controller with the default limits, its clock at t0.
func limitedController(t *testing.T, opts ...privacy.Option) *privacy.Controller {
	t.Helper()
	c, err := privacy.New(append([]privacy.Option{privacy.WithClock(func() time.Time { return t0 })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestFutureTimestampIsTheClocksTime: a Timestamp more than FutureSkew ahead
// of the clock is taken as the clock's time, so that a device whose clock
// runs ahead cannot freeze a trait under last-updated-wins; within the skew
// it is kept.
func TestFutureTimestampIsTheClocksTime(t *testing.T) {
	ctx := context.Background()
	c := limitedController(t)
	far := time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := c.Collect(ctx, privacy.Identify{MessageID: "future", UserID: "ada", Traits: map[string]any{"plan": "free"}, Timestamp: far}); err != nil {
		t.Fatal(err)
	}
	p, err := c.Profile(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Traits["plan"].UpdatedAt; !got.Equal(t0) {
		t.Errorf("a trait stamped in year 9000 was updated at %v; want the clock's %v", got, t0)
	}
	// A later message replaces it, as last-updated-wins should.
	if err := c.Collect(ctx, privacy.Identify{MessageID: "later", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if p, err = c.Profile(ctx, user("ada")); err != nil || p.Traits["plan"].Value != "pro" {
		t.Errorf("after a later message: plan %v, %v; want pro", p.Traits["plan"].Value, err)
	}
	if got := p.Traits["plan"].UpdatedAt; !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("a message within the skew was stamped %v; want its own %v", got, t0.Add(time.Minute))
	}
	// The bound is configurable.
	strict := limitedController(t, privacy.WithLimits(privacy.Limits{FutureSkew: time.Second}))
	if err := strict.Collect(ctx, privacy.Track{UserID: "bob", Event: "E", Timestamp: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	page, err := strict.Events(ctx, user("bob"), profileEvents(10))
	if err != nil || len(page.Events) != 1 || !page.Events[0].Timestamp.Equal(t0) {
		t.Errorf("with a skew of 1 s, an event a minute ahead = %+v, %v; want it at the clock's time", page.Events, err)
	}
}

// TestLimitsRefuseNamingTheField: a message past a limit is refused with
// ErrInvalid naming the field, and nothing is stored.
func TestLimitsRefuseNamingTheField(t *testing.T) {
	ctx := context.Background()
	c := limitedController(t)
	big := strings.Repeat("x", privacy.DefaultMessageBytes)
	props := map[string]any{}
	for i := range privacy.DefaultProperties + 1 {
		props[string(rune('a'+i%26))+strings.Repeat("k", i/26)] = i
	}
	for name, tc := range map[string]struct {
		msg   privacy.Message
		field string
	}{
		"a trait too large":         {privacy.Identify{UserID: "u1", Traits: map[string]any{"bio": big}, Timestamp: t0}, `Traits["bio"]`},
		"a property too large":      {privacy.Track{UserID: "u2", Event: "E", Properties: map[string]any{"p": big}, Timestamp: t0}, "Properties"},
		"too many properties":       {privacy.Track{UserID: "u3", Event: "E", Properties: props, Timestamp: t0}, "Properties"},
		"a message id too long":     {privacy.Track{MessageID: strings.Repeat("m", 101), UserID: "u4", Event: "E", Timestamp: t0}, "MessageID"},
		"identifiers too large":     {privacy.Track{UserID: "u5", AnonymousID: strings.Repeat("a", 1000), ExternalIDs: externalIDs(40), Event: "E", Timestamp: t0}, "ExternalIDs["},
		"a timestamp before year 1": {privacy.Track{UserID: "u6", Event: "E", Timestamp: time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC)}, "Timestamp"},
		"a user id too large":       {privacy.Track{UserID: strings.Repeat("u", 40<<10), Event: "E", Timestamp: t0}, "UserID"},
		"a trait name too long":     {privacy.Identify{UserID: "u7", Traits: map[string]any{strings.Repeat("\xff", 64<<20): 1}, Timestamp: t0}, "Traits"},
	} {
		err := c.Collect(ctx, tc.msg)
		var fe *privacy.FieldError
		if !errors.As(err, &fe) || !errors.Is(err, privacy.ErrInvalid) || fe.Field != tc.field && !(strings.HasSuffix(tc.field, "[") && strings.HasPrefix(fe.Field, tc.field)) {
			t.Errorf("%s: Collect = %v; want ErrInvalid naming %s", name, err, tc.field)
		}
	}
	if n := c.Stats().Collected; n != 0 {
		t.Errorf("%d messages collected; want none", n)
	}
	// A rectification is bounded alike.
	if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Timestamp: t0}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Rectify(ctx, user("ada"), map[string]any{"bio": big})
	if !errors.Is(err, privacy.ErrInvalid) || !strings.Contains(err.Error(), "Limits.MessageBytes") {
		t.Errorf("Rectify with a 32 KiB trait = %v; want ErrInvalid naming the limit", err)
	}
	// Raised, the same message is taken.
	roomy := limitedController(t, privacy.WithLimits(privacy.Limits{MessageBytes: 1 << 20, Properties: 1000, MessageIDBytes: 200}))
	for _, m := range []privacy.Message{
		privacy.Identify{UserID: "u1", Traits: map[string]any{"bio": big}, Timestamp: t0},
		privacy.Track{UserID: "u3", Event: "E", Properties: props, Timestamp: t0},
		privacy.Track{MessageID: strings.Repeat("m", 101), UserID: "u4", Event: "E", Timestamp: t0},
	} {
		if err := roomy.Collect(ctx, m); err != nil {
			t.Errorf("with raised limits: Collect = %v", err)
		}
	}
}

func TestWithLimitsRefusesOutOfRange(t *testing.T) {
	for name, l := range map[string]privacy.Limits{
		"negative MessageBytes":   {MessageBytes: -1},
		"huge MessageBytes":       {MessageBytes: 1 << 30},
		"negative Properties":     {Properties: -1},
		"negative MessageIDBytes": {MessageIDBytes: -5},
		"negative FutureSkew":     {FutureSkew: -time.Second},
	} {
		_, err := privacy.New(privacy.WithLimits(l))
		field := strings.Fields(name)[1]
		if !errors.Is(err, privacy.ErrInvalid) || !strings.Contains(err.Error(), "Limits."+field) {
			t.Errorf("%s: New = %v; want ErrInvalid naming Limits.%s", name, err, field)
		}
	}
}

func profileEvents(limit int) profile.EventQuery { return profile.EventQuery{Limit: limit} }

// externalIDs returns n external identifiers of 1 KB each.
func externalIDs(n int) []identity.ID {
	ids := make([]identity.ID, n)
	for i := range ids {
		ids[i] = identity.ID{Type: "crm_id", Value: fmt.Sprintf("%04d%s", i, strings.Repeat("c", 1020))}
	}
	return ids
}

// TestLimitsTakeWhatSegmentTakes: a message whose JSON is within Segment's
// 32 KiB is taken, however many small values it holds (each counted no more
// than its JSON takes).
func TestLimitsTakeWhatSegmentTakes(t *testing.T) {
	c := limitedController(t)
	ratings := make([]any, 6000)
	for i := range ratings {
		ratings[i] = float64(i % 10)
	}
	props := map[string]any{"ratings": ratings, "flags": []any{true, false, nil}}
	b, err := json.Marshal(privacy.Track{UserID: "u1", Event: "Rated", Properties: props, Timestamp: t0})
	if err != nil || len(b) >= privacy.DefaultMessageBytes {
		t.Fatalf("the message's JSON is %d bytes (%v); the test wants it under 32 KiB", len(b), err)
	}
	if err := c.Collect(context.Background(), privacy.Track{UserID: "u1", Event: "Rated", Properties: props, Timestamp: t0}); err != nil {
		t.Errorf("Collect of %d bytes of JSON = %v; want it taken", len(b), err)
	}
}

// TestLimitsBoundAMarshalersOutput: a json.Marshaler's output is counted by
// its length before it is decoded: 24 MiB of JSON objects are refused
// without decoding them into millions of maps.
func TestLimitsBoundAMarshalersOutput(t *testing.T) {
	c := limitedController(t)
	raw := "[" + strings.Repeat("{},", 8<<20) + "{}]"
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := c.Collect(context.Background(), privacy.Track{UserID: "u1", Event: "E", Timestamp: t0,
		Properties: map[string]any{"raw": json.RawMessage(raw)}})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, privacy.ErrInvalid) || !strings.Contains(err.Error(), "Limits.MessageBytes") {
		t.Errorf("Collect of a 24 MiB RawMessage = %v; want it refused as too large", err)
	}
	if mb := (after.TotalAlloc - before.TotalAlloc) >> 20; mb > 256 {
		t.Errorf("refusing it allocated %d MiB; want about the RawMessage's copies, not its decoding", mb)
	}
}

// note is a struct value: it reaches normalisation through encoding/json.
type note struct{ Text string }

// TestLimitsCountJSONAsItIs: numbers count their digits, so sixteen thousand
// long floats (390 KB of JSON) are refused; a struct's text is not counted
// HTML-escaped (26 KB of JSON, "<" one byte), so it is taken.
func TestLimitsCountJSONAsItIs(t *testing.T) {
	ctx := context.Background()
	c := limitedController(t)
	xs := make([]any, 16000)
	for i := range xs {
		xs[i] = 0.1234567890123 + float64(i)
	}
	err := c.Collect(ctx, privacy.Track{UserID: "u1", Event: "E", Properties: map[string]any{"xs": xs}, Timestamp: t0})
	if !errors.Is(err, privacy.ErrInvalid) || !strings.Contains(err.Error(), "Limits.MessageBytes") {
		t.Errorf("Collect of 390 KB of numbers = %v; want it refused as too large", err)
	}
	props := map[string]any{"a": strings.Repeat("x", 20000), "note": note{Text: strings.Repeat("<&>", 2000)}}
	if err := c.Collect(ctx, privacy.Track{UserID: "u2", Event: "E", Properties: props, Timestamp: t0}); err != nil {
		t.Errorf("Collect of 26 KB with a struct of HTML characters = %v; want it taken", err)
	}
}
