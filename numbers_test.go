package privacy_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// big is 2^53+1, the first integer a float64 rounds.
const bigText = "9007199254740993"

// TestAnyJSONNumberIsKeptExactly: Segment takes any JSON number; an integer
// beyond 2^53 (as a Go integer or a json.Number) and a decimal with more
// digits than a float64 holds are stored, read back and sent on exactly,
// in memory and sealed; audiences compare them; an integer property a
// custom identifier rule names becomes that identifier.
func TestAnyJSONNumberIsKeptExactly(t *testing.T) {
	for name, store := range map[string]func() *profile.MemStore{"clear": profile.NewMemStore, "sealed": profile.NewSealedMemStore} {
		t.Run(name, func(t *testing.T) {
			crm := destination.NewRecorder("crm")
			rules := identity.DefaultRules()
			rules.Custom = []identity.CustomID{{Type: "order_id", Property: "order"}}
			e := newEnv(t, privacy.WithProfiles(store()), privacy.WithDestinations(crm), privacy.WithIdentityRules(rules), fastDelivery())
			define(t, e.c, "whale", "trait('balance') > 9007199254740991")
			e.collect(t,
				privacy.Identify{MessageID: "i", UserID: "u1", Timestamp: at(1),
					Traits: map[string]any{"balance": int64(1<<53 + 1), "precise": json.Number("0.10000000000000000555")}},
				privacy.Track{MessageID: "t", UserID: "u1", Event: "Paid", Timestamp: at(2),
					Properties: map[string]any{"order": json.Number("123456789012345678901"), "cents": uint64(1<<64 - 1)},
					Context:    map[string]any{"big": json.Number(bigText)}},
			)
			p := e.profile(t, user("u1"))
			if got := p.Traits["balance"].Value; got != json.Number(bigText) {
				t.Errorf("trait balance = %#v; want json.Number(%s)", got, bigText)
			}
			if got := p.Traits["precise"].Value; got != json.Number("0.10000000000000000555") {
				t.Errorf("trait precise = %#v; want its text", got)
			}
			ev := mustEvents(t, e.c, user("u1"))[0]
			if ev.Properties["order"] != json.Number("123456789012345678901") || ev.Properties["cents"] != json.Number("18446744073709551615") ||
				ev.Context["big"] != json.Number(bigText) {
				t.Errorf("event = %#v, context %#v; want its numbers exact", ev.Properties, ev.Context)
			}
			if got := members(t, e.c, "whale"); len(got) != 1 || got[0] != p.ID {
				t.Errorf("whale = %v; want u1, whose balance is 2^53+1", got)
			}
			if q, err := e.c.Profile(context.Background(), identity.ID{Type: "order_id", Value: "123456789012345678901"}); err != nil || q.ID != p.ID {
				t.Errorf("Profile(order_id) = %v, %v; want u1's: an integer property is an identifier, exactly", q, err)
			}
			flush(t, e.c)
			for _, m := range crm.Messages() {
				if m.Type == "track" && m.Event == "Paid" && m.Properties["order"] != json.Number("123456789012345678901") {
					t.Errorf("the destination got order %#v; want it exact", m.Properties["order"])
				}
				if m.Type == "identify" && m.Traits["balance"] != json.Number(bigText) {
					t.Errorf("the destination got balance %#v; want it exact", m.Traits["balance"])
				}
			}
		})
	}
}
