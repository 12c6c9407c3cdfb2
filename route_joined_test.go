package privacy_test

import (
	"slices"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
)

// audienceNews returns the audience changes r was sent, as "entered key" or
// "exited key", in order.
func audienceNews(r *destination.Recorder) []string {
	var out []string
	for _, m := range r.Messages() {
		k, _ := m.Properties["audience_key"].(string)
		switch m.Event {
		case destination.AudienceEntered:
			out = append(out, "entered "+k)
		case destination.AudienceExited:
			out = append(out, "exited "+k)
		}
	}
	return out
}

// TestNewHolderIsToldOfAudiences: a destination that first holds the
// person after they entered an audience (consent kept it out until then)
// is told of the entry with the message that makes it a holder, so the
// exit it later hears of follows an entry, on Collect and CollectBatch.
func TestNewHolderIsToldOfAudiences(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(pathName(batch), func(t *testing.T) {
			ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
			e := newEnv(t, privacy.WithDestinations(ads), fastDelivery())
			define(t, e.c, "pro", "trait('plan') = 'pro'")
			denied, granted := consentCtx(map[string]any{"Advertising": false}), consentCtx(map[string]any{"Advertising": true})
			e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Context: denied})
			next := privacy.Track{MessageID: "t1", UserID: "u1", Event: "Viewed", Timestamp: at(2), Context: granted}
			e.collectEither(t, batch, next)
			e.collect(t, privacy.Identify{MessageID: "i2", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(3), Context: granted})
			flush(t, e.c)
			if got, want := audienceNews(ads.Recorder), []string{"entered pro", "exited pro"}; !slices.Equal(got, want) {
				t.Errorf("the destination consent kept out until t1 heard %v; want %v", got, want)
			}
			// Told once: a later message to a destination that holds the
			// person owes no entry again.
			e.collect(t, privacy.Track{MessageID: "t2", UserID: "u1", Event: "Viewed", Timestamp: at(4), Context: granted})
			flush(t, e.c)
			if got := audienceNews(ads.Recorder); len(got) != 2 {
				t.Errorf("after another message the destination heard %v; want the two changes only", got)
			}
		})
	}
}

// TestDestinationAddedLaterIsToldOfAudiences: a host restarted with a new
// destination tells it of a person's audiences with the person's next
// message, which makes it a recipient; an entry that message causes itself
// is told once.
func TestDestinationAddedLaterIsToldOfAudiences(t *testing.T) {
	h := newHosts()
	clk := newClock(t0)
	before := h.host(t, "host", clk)
	define(t, before, "pro", "trait('plan') = 'pro'")
	define(t, before, "viewer", "event('Viewed')")
	e := &env{c: before}
	e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)})
	before.Close()

	crm := destination.NewRecorder("crm")
	after := h.host(t, "host", clk, privacy.WithDestinations(crm))
	e = &env{c: after}
	e.collect(t, privacy.Track{MessageID: "t1", UserID: "u1", Event: "Viewed", Timestamp: at(2)})
	flush(t, after)
	got := audienceNews(crm)
	slices.Sort(got)
	if want := []string{"entered pro", "entered viewer"}; !slices.Equal(got, want) {
		t.Errorf("the destination added later heard %v; want %v (pro from before, viewer from t1, once each)", got, want)
	}
}
