package privacy_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

// TestInt64IdentifierKeptExactly: an int64 order id beyond 2^53 that
// a float64 holds (2^60, a snowflake-like id) becomes the custom identifier
// of its shortest float text, 1152921504606847000, another number: the
// person is not found by the order id they sent, and the destination is
// sent another number. The same id given as a json.Number works.
func TestInt64IdentifierKeptExactly(t *testing.T) {
	const idText = "1152921504606846976" // 2^60
	crm := destination.NewRecorder("crm")
	rules := identity.DefaultRules()
	rules.Custom = []identity.CustomID{{Type: "order_id", Property: "order"}}
	e := newEnv(t, privacy.WithDestinations(crm), privacy.WithIdentityRules(rules), fastDelivery())
	e.collect(t, privacy.Track{MessageID: "t", UserID: "u1", Event: "Paid", Timestamp: at(1),
		Properties: map[string]any{"order": int64(1 << 60)}})
	p := e.profile(t, user("u1"))
	if q, err := e.c.Profile(context.Background(), identity.ID{Type: "order_id", Value: idText}); err != nil || q.ID != p.ID {
		t.Errorf("Profile(order_id:%s) = %v; want u1's profile (identifiers %v)", idText, err, ids(p))
	}
	if got := mustEvents(t, e.c, user("u1"))[0].Properties["order"]; got != json.Number(idText) {
		t.Errorf("the stored order = %#v; want json.Number(%s)", got, idText)
	}
	flush(t, e.c)
	for _, m := range crm.Messages() {
		if m.Type == "track" {
			if b, _ := json.Marshal(m.Properties["order"]); string(b) != idText {
				t.Errorf("the destination was sent order %s; want %s", b, idText)
			}
		}
	}
}

// TestInt64IdentifierJoinsAnotherPerson: the rounded identifier is
// another order's: the person whose order really is 1152921504606847000 is
// joined to the one who sent 2^60.
func TestInt64IdentifierJoinsAnotherPerson(t *testing.T) {
	rules := identity.DefaultRules()
	rules.Custom = []identity.CustomID{{Type: "order_id", Property: "order"}}
	e := newEnv(t, privacy.WithIdentityRules(rules))
	e.collect(t,
		privacy.Track{MessageID: "t1", AnonymousID: "a1", Event: "Paid", Timestamp: at(1), Properties: map[string]any{"order": int64(1 << 60)}},
		privacy.Track{MessageID: "t2", AnonymousID: "a2", Event: "Paid", Timestamp: at(2), Properties: map[string]any{"order": "1152921504606847000"}},
	)
	if p1, p2 := e.profile(t, anon("a1")), e.profile(t, anon("a2")); p1.ID == p2.ID {
		t.Errorf("two people with orders 1152921504606846976 and 1152921504606847000 are one profile %s (identifiers %v)", p1.ID, ids(p1))
	}
}

// TestIdentifierDoesNotDependOnSpelling: a json.Number is kept with
// the text it came with, so two spellings of one integer beyond a float64
// are two values: only the plain one becomes a custom identifier. A
// float64-held integer becomes one whatever its spelling (1.5e20).
func TestIdentifierDoesNotDependOnSpelling(t *testing.T) {
	rules := identity.DefaultRules()
	rules.Custom = []identity.CustomID{{Type: "order_id", Property: "order"}}
	for i, spelling := range []json.Number{"123456789012345678901", "1.23456789012345678901e20", "123456789012345678901.0", "12345678901234567890100e-2"} {
		e := newEnv(t, privacy.WithIdentityRules(rules))
		e.collect(t, privacy.Track{MessageID: "t", UserID: "u1", Event: "Paid", Timestamp: at(1), Properties: map[string]any{"order": spelling}})
		if _, err := e.c.Profile(context.Background(), identity.ID{Type: "order_id", Value: "123456789012345678901"}); err != nil {
			t.Errorf("spelling %d (%s): Profile(order_id:123456789012345678901) = %v", i, spelling, err)
		}
	}
}
