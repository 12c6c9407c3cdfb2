package privacy_test

import (
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/profile"
)

// TestEachStoredEventIsItsOwn: the Controller hands the profile store each
// message's event from a pool and reuses it for the next message once the
// store has copied what it keeps (profile.Tx.Update). Tracks, pages and
// screens of two people, one after another, each read back as collected,
// in the default store and in the sealed one: a store or a Controller
// that kept the pooled event would show the last message everywhere.
func TestEachStoredEventIsItsOwn(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []privacy.Option
	}{{"clear", nil}, {"sealed", []privacy.Option{privacy.WithProfiles(profile.NewSealedMemStore())}}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts...)
			e.collect(t,
				privacy.Track{MessageID: "t1", UserID: "ada", Event: "Viewed", Properties: map[string]any{"sku": "A"}, Timestamp: at(1)},
				privacy.Page{MessageID: "p1", UserID: "bob", Name: "Home", Properties: map[string]any{"path": "/"}, Timestamp: at(2)},
				privacy.Screen{MessageID: "s1", UserID: "ada", Name: "Cart", Timestamp: at(3)},
				privacy.Track{MessageID: "t2", UserID: "bob", Event: "Bought", Properties: map[string]any{"sku": "B"}, Timestamp: at(4)},
			)
			want := map[string][]string{"ada": {"s1 Cart ", "t1 Viewed A"}, "bob": {"t2 Bought B", "p1 Home "}} // newest first
			for who, w := range want {
				evs := mustEvents(t, e.c, user(who))
				var got []string
				for _, ev := range evs {
					sku, _ := ev.Properties["sku"].(string)
					got = append(got, ev.MessageID+" "+ev.Name+" "+sku)
				}
				if len(got) != len(w) {
					t.Fatalf("%s's events: %q; want %q", who, got, w)
				}
				for i := range w {
					if got[i] != w[i] {
						t.Errorf("%s's event %d: %q; want %q", who, i, got[i], w[i])
					}
				}
			}
		})
	}
}
