package privacy_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
)

// entryBeforeExit reports the first audience exit news holds without an
// entry of the same key before it, and any entry heard twice without an
// exit between ("" when none).
func entryBeforeExit(news []string) string {
	in := map[string]bool{}
	for _, s := range news {
		switch {
		case len(s) > 8 && s[:8] == "entered ":
			k := s[8:]
			if in[k] {
				return "entered twice: " + k
			}
			in[k] = true
		case len(s) > 7 && s[:7] == "exited ":
			k := s[7:]
			if !in[k] {
				return "exit without entry: " + k
			}
			in[k] = false
		}
	}
	return ""
}

// The Consent Preference Updated event is routed to a destination
// under consent categories whatever the preferences say. It also makes that
// destination a recipient, so the person's withdrawal itself makes the
// destination they denied a holder: it is then "caught up" on the
// audiences the person is in, and hears every later audience change and
// rectification (trait values) although every message says Advertising:
// false.
func TestConsentEventDoesNotMakeDeniedDestinationAHolder(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(pathName(batch), func(t *testing.T) {
			ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
			crm := destination.NewRecorder("crm")
			e := newEnv(t, privacy.WithDestinations(ads, crm), fastDelivery())
			define(t, e.c, "pro", "trait('plan') = 'pro'")
			denied := consentCtx(map[string]any{"Advertising": false})
			e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Context: denied})
			ev := privacy.Track{MessageID: "c1", UserID: "u1", Event: privacy.ConsentPreferenceUpdated, Timestamp: at(2), Context: denied}
			e.collectEither(t, batch, ev)
			e.collect(t, privacy.Identify{MessageID: "i2", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(3), Context: denied})
			if _, err := e.c.Rectify(context.Background(), user("u1"), map[string]any{"phone": "+33 6 00 00 00 00"}); err != nil {
				t.Fatal(err)
			}
			flush(t, e.c)
			var leaked []string
			for _, m := range ads.Messages() {
				if m.Event != privacy.ConsentPreferenceUpdated {
					leaked = append(leaked, m.Type+" "+m.Event+" "+m.MessageID)
				}
			}
			if len(leaked) > 0 {
				t.Errorf("the person denied Advertising in every message; the ads destination was sent %v besides the consent event", leaked)
			}
		})
	}
}

// A merge joins two profiles held by different destinations. The
// destination that held only the profile outside an audience now holds a
// member, but is never told of the entry: its next news of that audience
// is an exit.
func TestMergeTellsEachHolderOfEntriesBeforeExits(t *testing.T) {
	d1, d2 := destination.NewRecorder("d1"), destination.NewRecorder("d2")
	e := newEnv(t, privacy.WithDestinations(d1, d2), fastDelivery())
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	e.collect(t,
		// The anonymous visitor's data goes to d1 only; they enter pro.
		privacy.Identify{MessageID: "a", AnonymousID: "laptop", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Integrations: only("d1")},
		// The known user's to d2 only.
		privacy.Identify{MessageID: "b", UserID: "u1", Traits: map[string]any{"name": "Ada"}, Timestamp: at(2), Integrations: only("d2")},
		// The merge, sent everywhere: both now hold a member of pro.
		privacy.Identify{MessageID: "join", UserID: "u1", AnonymousID: "laptop", Timestamp: at(3)},
		// They leave pro.
		privacy.Identify{MessageID: "free", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(4)},
	)
	flush(t, e.c)
	checkNews(t, d1, d2)
}

// failingAudiences fails the commit of its transactions while fail is set.
type failingAudiences struct {
	audience.Store
	fail *atomic.Bool
}

type failingAudiencesTx struct {
	audience.Tx
	fail *atomic.Bool
}

func (s failingAudiences) Begin(ctx context.Context) (audience.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	return failingAudiencesTx{tx, s.fail}, err
}

func (tx failingAudiencesTx) Commit(ctx context.Context) error {
	if tx.fail.Load() {
		tx.Tx.Rollback(ctx)
		return errors.New("audience backend down")
	}
	return tx.Tx.Commit(ctx)
}

// The message that makes a destination a holder owes it the
// audiences the person is in. When the audience commit fails after the
// profile's (backends sharing no transaction), the catch-up is dropped
// with the changes, and the recount that follows reports no change for an
// audience the person was already in: the new holder is never told, and
// hears the exit.
func TestNewHolderCaughtUpAfterAudienceCommitFailure(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(pathName(batch), func(t *testing.T) {
			ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
			var fail atomic.Bool
			e := newEnv(t, privacy.WithDestinations(ads), privacy.WithAudiences(failingAudiences{audience.NewMemStore(), &fail}), fastDelivery())
			define(t, e.c, "pro", "trait('plan') = 'pro'")
			denied, granted := consentCtx(map[string]any{"Advertising": false}), consentCtx(map[string]any{"Advertising": true})
			e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Context: denied})
			fail.Store(true)
			next := privacy.Track{MessageID: "t1", UserID: "u1", Event: "Viewed", Timestamp: at(2), Context: granted}
			var err error
			if batch {
				err = e.c.CollectBatch(context.Background(), []privacy.Message{next})
			} else {
				err = e.c.Collect(context.Background(), next)
			}
			fail.Store(false)
			if err != nil {
				t.Fatalf("t1: %v (the message is stored whatever the audience commit)", err)
			}
			if _, err := e.c.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			e.collect(t, privacy.Identify{MessageID: "i2", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(3), Context: granted})
			flush(t, e.c)
			if got, want := audienceNews(ads.Recorder), []string{"entered pro", "exited pro"}; !slices.Equal(got, want) {
				t.Errorf("ads became a holder with t1 (audience commit failed): it heard %v; want %v", got, want)
			}
		})
	}
}

// The message that makes a destination a holder also takes the
// person out of an audience: the exit is owed to the holders after the
// message, the new one included, which was never told of the entry.
func TestNewHolderNotToldOfExitItNeverEntered(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(pathName(batch), func(t *testing.T) {
			ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
			e := newEnv(t, privacy.WithDestinations(ads), fastDelivery())
			define(t, e.c, "pro", "trait('plan') = 'pro'")
			denied, granted := consentCtx(map[string]any{"Advertising": false}), consentCtx(map[string]any{"Advertising": true})
			e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Context: denied})
			next := privacy.Identify{MessageID: "i2", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(2), Context: granted}
			e.collectEither(t, batch, next)
			flush(t, e.c)
			if bad := entryBeforeExit(audienceNews(ads.Recorder)); bad != "" {
				t.Errorf("ads, a holder from i2 on, heard %v: %s", audienceNews(ads.Recorder), bad)
			}
		})
	}
}

// The merge itself takes the person out of an audience the
// merged-away profile was in (its trait is older than the other's): the exit
// goes to the destination that held only the other profile.
func TestMergeExitOnlyToThoseToldOfEntry(t *testing.T) {
	d1, d2 := destination.NewRecorder("d1"), destination.NewRecorder("d2")
	e := newEnv(t, privacy.WithDestinations(d1, d2), fastDelivery())
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	e.collect(t,
		privacy.Identify{MessageID: "a", AnonymousID: "laptop", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Integrations: only("d1")},
		privacy.Identify{MessageID: "b", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(2), Integrations: only("d2")},
		privacy.Identify{MessageID: "join", UserID: "u1", AnonymousID: "laptop", Timestamp: at(3)},
	)
	flush(t, e.c)
	checkNews(t, d1, d2)
}

// CollectBatch, audience commit failing: the message that makes
// ads a holder also brings the person into pro. The catch-up (computed on
// the state that was not stored) tells ads of pro as an audience held
// before; the recount then finds the entry again and tells every holder.
func TestNoEntryTwiceAfterBatchAudienceCommitFailure(t *testing.T) {
	ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
	var fail atomic.Bool
	e := newEnv(t, privacy.WithDestinations(ads), privacy.WithAudiences(failingAudiences{audience.NewMemStore(), &fail}), fastDelivery())
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	denied, granted := consentCtx(map[string]any{"Advertising": false}), consentCtx(map[string]any{"Advertising": true})
	e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(1), Context: denied})
	fail.Store(true)
	err := e.c.CollectBatch(context.Background(), []privacy.Message{
		privacy.Identify{MessageID: "i2", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(2), Context: granted}})
	fail.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Refresh(context.Background()); err != nil { // the recount, now that the backend is back
		t.Fatal(err)
	}
	flush(t, e.c)
	if bad := entryBeforeExit(audienceNews(ads.Recorder)); bad != "" {
		t.Errorf("ads heard %v: %s", audienceNews(ads.Recorder), bad)
	}
}
