package sqlstore_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
)

// TestErasureLeavesNothingOnTheAccount: a person's group call is
// recorded on the account profile too (its message id in the account's
// metadata and recorded message ids). Erasing the person must leave none of
// the person's data anywhere, the account included: the message id is one
// of the canaries TestCanariesGoNowhereElse checks for a person.
func TestErasureLeavesNothingOnTheAccount(t *testing.T) {
	const msgCanary = "cnry-gmsg-b1"
	const uidCanary = "cnry-guid-b1"
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			p := s.open(t)
			ctx := t.Context()
			c := p.controller(t, nil)
			now := time.Now()
			must(t, c.Collect(ctx, privacy.Group{MessageID: msgCanary, UserID: uidCanary, GroupID: "acme",
				Traits: map[string]any{"name": "Acme"}, Timestamp: now}))
			r, err := c.Erase(ctx, identity.ID{Type: identity.TypeUserID, Value: uidCanary})
			must(t, err)
			if r.Status != privacy.Finished {
				t.Fatalf("Erase = %+v", r)
			}
			acc, err := c.Account(ctx, "acme")
			must(t, err)
			b, _ := json.Marshal(acc)
			if strings.Contains(string(b), msgCanary) {
				t.Errorf("the erased person's message id is on the account: %s", b)
			}
			for _, needle := range []string{msgCanary, uidCanary} {
				if tables := s.holders(t, needle); len(tables) > 0 {
					t.Errorf("%s is in the tables %v after the erasure", needle, tables)
				}
			}
			page, err := p.jrnl.Journal().List(ctx, journal.Filter{Limit: 1000})
			must(t, err)
			for _, e := range page.Entries {
				b, _ := json.Marshal(e)
				if strings.Contains(string(b), msgCanary) {
					t.Errorf("journal entry %s holds the message id", e.ID)
				}
			}
		})
	}
}

// TestRectificationJournalKeepsNoAccountLinks: a rectification journals
// the person's metadata in its Update, the account links in it included:
// once the person is erased, no journal entry (or any table) may still say
// which groups they belonged to. (A review found Scrub and SealPersonal
// cleared the message ids there but not the links.)
func TestRectificationJournalKeepsNoAccountLinks(t *testing.T) {
	const groupCanary = "cnry-group-of-b2"
	rectifiedThenErasedLeavesNo(t, groupCanary, privacy.Group{MessageID: "g-b2", UserID: "u-b2", GroupID: groupCanary, Timestamp: time.Now()})
}

// TestRectificationJournalKeepsNoConsentMessageIDs: the same for the
// consent history the metadata carries: its message ids.
func TestRectificationJournalKeepsNoConsentMessageIDs(t *testing.T) {
	const msgCanary = "cnry-cmsg-b3"
	rectifiedThenErasedLeavesNo(t, msgCanary, privacy.Identify{MessageID: msgCanary, UserID: "u-b3", Timestamp: time.Now(),
		Context: map[string]any{"consent": map[string]any{"categoryPreferences": map[string]any{"ads": true}}}})
}

// rectifiedThenErasedLeavesNo collects first, about the user it names,
// rectifies and erases them, and checks that canary, which first put in
// their metadata, is in no journal entry and no table.
func rectifiedThenErasedLeavesNo(t *testing.T, canary string, first privacy.Message) {
	t.Helper()
	var uidValue string
	switch m := first.(type) {
	case privacy.Group:
		uidValue = m.UserID
	case privacy.Identify:
		uidValue = m.UserID
	}
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			p := s.open(t)
			ctx := t.Context()
			c := p.controller(t, nil)
			uid := identity.ID{Type: identity.TypeUserID, Value: uidValue}
			must(t, c.Collect(ctx, first))
			if _, err := c.Rectify(ctx, uid, map[string]any{"plan": "free"}); err != nil {
				t.Fatal(err)
			}
			if r, err := c.Erase(ctx, uid); err != nil || r.Status != privacy.Finished {
				t.Fatalf("Erase = %+v, %v", r, err)
			}
			page, err := p.jrnl.Journal().List(ctx, journal.Filter{Limit: 1000})
			must(t, err)
			for _, e := range page.Entries {
				b, _ := json.Marshal(e)
				if strings.Contains(string(b), canary) {
					t.Errorf("journal entry %s (%s) keeps what the erased person's metadata held: %s", e.ID, e.Type, around(string(b), canary))
				}
			}
			if tables := s.holders(t, canary); len(tables) > 0 {
				t.Errorf("%s is in the tables %v after the person's erasure", canary, tables)
			}
		})
	}
}

// TestTwoControllersRaceOnOneAccount: two Controllers on one
// database (pools and stripes of their own: only the database's locks
// between them) send group calls of different people about one group at
// once, each setting its own trait. No trait may be lost and the account's
// version counts every call.
func TestTwoControllersRaceOnOneAccount(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			pa, pb := s.open(t), s.open(t)
			a, b := pa.controller(t, nil), pb.controller(t, nil)
			ctx := t.Context()
			const n = 40
			var wg sync.WaitGroup
			errs := make(chan error, 2*n)
			for i := range n {
				for j, c := range []*privacy.Controller{a, b} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						k := fmt.Sprintf("k%d_%d", j, i)
						errs <- c.Collect(ctx, privacy.Group{MessageID: "m-" + k, UserID: "u-" + k, GroupID: "shared",
							Traits: map[string]any{k: float64(i)}, Timestamp: time.Now()})
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			acc, err := a.Account(ctx, "shared")
			must(t, err)
			if len(acc.Traits) != 2*n || acc.Metadata.Version != 2*n {
				t.Errorf("the account has %d traits, version %d; want %d and %d", len(acc.Traits), acc.Metadata.Version, 2*n, 2*n)
			}
		})
	}
}

// TestAccountTraitsSealed: with encryption at rest, an account's
// traits are sealed like a person's (under the account's own data key),
// and a member's erasure leaves the account readable.
func TestAccountTraitsSealed(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			p := s.open(t)
			ctx := t.Context()
			c := p.controller(t, nil)
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "i", UserID: "u-b5", Timestamp: time.Now(), Traits: map[string]any{"x": "cnry-person-trait-b5"}}))
			must(t, c.Collect(ctx, privacy.Group{MessageID: "g", UserID: "u-b5", GroupID: "acme-b5", Timestamp: time.Now(), Traits: map[string]any{"name": "cnry-acct-trait-b5"}}))
			if tables := s.holders(t, "cnry-person-trait-b5"); len(tables) > 0 {
				t.Fatalf("the person's trait is in clear in %v: the store does not seal here", tables)
			}
			if tables := s.holders(t, "cnry-acct-trait-b5"); len(tables) > 1 || tables["profile_traits"] > 0 {
				t.Errorf("the account's trait is in clear in %v", tables)
			}
			if _, err := c.Erase(ctx, identity.ID{Type: identity.TypeUserID, Value: "u-b5"}); err != nil {
				t.Fatal(err)
			}
			acc, err := c.Account(ctx, "acme-b5")
			if err != nil || acc.Traits["name"].Value != "cnry-acct-trait-b5" {
				t.Errorf("the account after its member's erasure: %v, %v", acc, err)
			}
		})
	}
}
