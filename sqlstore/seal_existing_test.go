package sqlstore_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/gdprkit/privacy/txscope"
)

// clearRows counts the rows kept in clear, per profile.
func clearRows(t *testing.T, s *site) map[string]int {
	t.Helper()
	rows, err := s.dataDB(t).QueryContext(t.Context(), s.q(`SELECT profile_id FROM `+s.table("profile_traits")+` WHERE sealed IS NULL
		UNION ALL SELECT profile_id FROM `+s.table("profile_messages")+` WHERE sealed IS NULL AND properties IS NOT NULL
		UNION ALL SELECT profile_id FROM `+s.table("identity_links")+` WHERE sealed IS NULL`))
	must(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var pid string
		must(t, rows.Scan(&pid))
		out[pid]++
	}
	must(t, rows.Err())
	return out
}

// TestSealExistingReturnsZeroWhileRowsStayInClear: SealExisting lists the
// profiles with rows in clear, then takes each one's lock. A profile an
// erasure (a merge, a rewrite) empties of clear rows between the listing and
// the lock used to end the run with 0 while other people were still in
// clear, and to get a data key again (a keyring row of an erased person).
// Now a run walks every profile listed, and makes a key only for rows to
// seal.
func TestSealExistingReturnsZeroWhileRowsStayInClear(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	p0 := s.open(t)
	c0 := p0.controller(t, nil, privacy.WithoutEncryption())
	ada := collectCanaries(t, c0, "ada")
	bob := collectCanaries(t, c0, "bob")
	first, other := ada, bob
	if bob.ID < ada.ID {
		first, other = bob, ada
	}
	p := s.open(t)
	p.controller(t, nil)

	// Hold the first profile's lock, as a Controller's erasure would.
	holder := s.open(t)
	hctx, scope := txscope.NewContext(ctx)
	must(t, holder.data.LockSubjects(hctx, []string{txscope.ProfileKey(string(first.ID))}))
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := p.data.SealExisting(ctx, 1)
		done <- result{n, err}
	}()
	time.Sleep(500 * time.Millisecond) // SealExisting has listed first, and waits for its lock
	// The erasure's commit: the person's rows and data key go.
	for _, table := range []string{"identity_links", "profile_traits", "profile_messages", "profiles", "keyring"} {
		_, err := s.admin.ExecContext(ctx, `DELETE FROM `+s.table(table)+` WHERE profile_id = $1`, string(first.ID))
		must(t, err)
	}
	scope.Close()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("SealExisting still waits")
	}
	must(t, r.err)
	if left := clearRows(t, s)[string(other.ID)]; r.n == 0 && left > 0 {
		t.Errorf("SealExisting returned 0 while profile %s still has %d rows in clear: a caller that runs it until it returns 0 stops here", other.ID, left)
	}
	var keys int
	must(t, s.admin.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+s.table("keyring")+` WHERE profile_id = $1`, string(first.ID)).Scan(&keys))
	if keys != 0 {
		t.Errorf("the erased profile %s has %d keyring rows after SealExisting: it made a data key for a person erased meanwhile", first.ID, keys)
	}
}

// TestSealExistingOneConflictBlocksEveryLaterRun: a clear link whose
// identifier a sealed link of another profile also names (an old host,
// started WithoutEncryption before the first Controller sealed, still
// collecting while the new one does: the upgrade window SealExisting is
// meant for). SealExisting's UPDATE of id_value to the index collided with
// the sealed row's primary key and failed, and since every run listed the
// profiles in the same order and stopped at the first error, the people
// listed after it were never sealed. Now the split is reported
// (identity.ErrConflict), that link left in clear, and the others sealed.
func TestSealExistingOneConflictBlocksEveryLaterRun(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	p0 := s.open(t)
	old := p0.controller(t, nil, privacy.WithoutEncryption()) // the old host, running on
	p := s.open(t)
	c := p.controller(t, nil)
	// The same person, seen by both hosts.
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "x-new", UserID: "xavier", Traits: map[string]any{"n": 1}, Timestamp: encTS}))
	must(t, old.Collect(ctx, privacy.Identify{MessageID: "x-old", UserID: "xavier", Traits: map[string]any{"n": 2}, Timestamp: encTS}))
	// People the old host collects after (profile ids sort by time).
	for _, u := range []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10"} {
		collectCanaries(t, old, u)
	}

	_, err := p.data.SealExisting(ctx, 1)
	if !errors.Is(err, identity.ErrConflict) || strings.Contains(err.Error(), "xavier") {
		t.Errorf("SealExisting beside a split identifier = %v; want identity.ErrConflict, naming no identifier", err)
	}
	left := clearRows(t, s)
	var xavier []string
	rows, err := s.admin.QueryContext(ctx, `SELECT DISTINCT profile_id FROM `+s.table("profile_messages")+` WHERE message_id LIKE 'x-%'`)
	must(t, err)
	for rows.Next() {
		var pid string
		must(t, rows.Scan(&pid))
		xavier = append(xavier, pid)
	}
	must(t, rows.Err())
	rows.Close()
	for _, pid := range xavier {
		delete(left, pid)
	}
	if len(left) > 0 {
		t.Errorf("after SealExisting, %d other profiles are still in clear (%v): one profile's failure blocks the others", len(left), left)
	}
}

// TestSealExistingLimits: bad limits are refused, a huge one works.
func TestSealExistingLimits(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			p0 := s.open(t)
			collectCanaries(t, p0.controller(t, nil, privacy.WithoutEncryption()), "ada")
			p := s.open(t)
			c := p.controller(t, nil)
			for _, l := range []int{0, -1, math.MinInt} {
				if _, err := p.data.SealExisting(ctx, l); !errors.Is(err, keyring.ErrInvalid) {
					t.Errorf("SealExisting(%d) = %v; want ErrInvalid", l, err)
				}
			}
			n, err := p.data.SealExisting(ctx, math.MaxInt)
			must(t, err)
			if n < 5 {
				t.Errorf("SealExisting(MaxInt) = %d", n)
			}
			checkCanariesRead(t, c, "ada")
			if left := clearRows(t, s); len(left) > 0 {
				t.Errorf("in clear after: %v", left)
			}
			if pr, err := c.Profile(ctx, identity.ID{Type: identity.TypeEmail, Value: emailOf("ada")}); err != nil || pr == nil {
				t.Errorf("Profile by email: %v", err)
			}
		})
	}
}

// TestSealExistingBesideCollectMergeErase: on PostgreSQL, one Store runs
// SealExisting over and over while a Controller on another pool merges
// anonymous profiles (kept in clear by an old host) into their user's,
// collects more and erases a third of the people. After, everything sealed:
// survivors read back whole, by either identifier, to one profile; the
// erased leave no rows; nothing is in clear.
func TestSealExistingBesideCollectMergeErase(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	p0 := s.open(t)
	old := p0.controller(t, nil, privacy.WithoutEncryption())
	const people = 24
	name := func(f string, i int) string { return fmt.Sprintf(f, i) }
	pids := map[int][]string{}
	for i := range people {
		must(t, old.Collect(ctx, privacy.Track{MessageID: name("a-%d", i), AnonymousID: name("anon-%d", i), Event: "Viewed",
			Properties: map[string]any{"note": canaryProp + name("-anon-%d", i)}, Timestamp: encTS}))
		must(t, old.Collect(ctx, privacy.Identify{MessageID: name("u-%d", i), UserID: name("user-%d", i),
			Traits: map[string]any{"favorite_color": canaryTrait + name("-%d", i), "email": name(canaryEmail+"-%d@example.com", i)}, Timestamp: encTS}))
		for _, id := range []identity.ID{{Type: identity.TypeAnonymousID, Value: name("anon-%d", i)}, uid(name("user-%d", i))} {
			pr, err := old.Profile(ctx, id)
			must(t, err)
			pids[i] = append(pids[i], string(pr.ID))
		}
	}
	p := s.open(t)
	c := p.controller(t, nil)
	sealer := s.open(t)
	sealer.controller(t, nil) // gives its Store the keys

	stop := make(chan struct{})
	sealDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				sealDone <- nil
				return
			default:
			}
			if _, err := sealer.data.SealExisting(ctx, 2); err != nil {
				sealDone <- err
				return
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, people*4)
	for i := range people {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Collect(ctx, privacy.Identify{MessageID: name("m-%d", i), AnonymousID: name("anon-%d", i), UserID: name("user-%d", i),
				Traits: map[string]any{"merged": true}, Timestamp: encTS.Add(time.Minute)}); err != nil {
				errs <- fmt.Errorf("merge %d: %w", i, err)
				return
			}
			if err := c.Collect(ctx, privacy.Track{MessageID: name("t-%d", i), UserID: name("user-%d", i), Event: "Later",
				Properties: map[string]any{"n": i}, Timestamp: encTS.Add(2 * time.Minute)}); err != nil {
				errs <- fmt.Errorf("track %d: %w", i, err)
				return
			}
			if i%3 == 0 {
				if _, err := c.Erase(ctx, uid(name("user-%d", i))); err != nil {
					errs <- fmt.Errorf("erase %d: %w", i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-sealDone; err != nil {
		t.Errorf("SealExisting beside the Controller: %v", err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for range 50 {
		if len(clearRows(t, s)) == 0 {
			break
		}
		_, err := sealer.data.SealExisting(ctx, 100)
		must(t, err)
	}
	if left := clearRows(t, s); len(left) > 0 {
		t.Errorf("rows in clear after: %v", left)
	}
	// Erasures finish (they may run on).
	deadline := time.Now().Add(30 * time.Second)
	for i := range people {
		if i%3 != 0 {
			continue
		}
		for {
			var n int
			var where []string
			for _, table := range append(dataTables[:0:0], "identity_links", "profile_traits", "profile_messages", "profiles", "keyring") {
				var k int
				must(t, s.admin.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+s.table(table)+` WHERE profile_id = ANY($1)`, pids[i]).Scan(&k))
				n += k
				if k > 0 {
					where = append(where, table)
				}
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("erased person %d (%v) leaves %d rows, in %v", i, pids[i], n, where)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for i := range people {
		u := uid(name("user-%d", i))
		pr, err := c.Profile(ctx, u)
		if i%3 == 0 {
			if err == nil {
				t.Errorf("erased person %d still reads: %+v", i, pr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Profile(user-%d): %v", i, err)
			continue
		}
		if pr.Traits["favorite_color"].Value != canaryTrait+name("-%d", i) || pr.Traits["merged"].Value != true {
			t.Errorf("person %d traits: %+v", i, pr.Traits)
		}
		byAnon, err := c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: name("anon-%d", i)})
		if err != nil || byAnon.ID != pr.ID {
			t.Errorf("person %d: anonymous id resolves to %v, %v; user id to %s", i, byAnon, err, pr.ID)
		}
		byMail, err := c.Profile(ctx, identity.ID{Type: identity.TypeEmail, Value: name(canaryEmail+"-%d@example.com", i)})
		if err != nil || byMail.ID != pr.ID {
			t.Errorf("person %d: email resolves to %v, %v; user id to %s", i, byMail, err, pr.ID)
		}
		page, err := c.Events(ctx, u, profile.EventQuery{})
		if err != nil {
			t.Errorf("Events %d: %v", i, err)
			continue
		}
		seen := map[string]bool{}
		for _, e := range page.Events {
			seen[e.MessageID] = true
			if e.MessageID == name("a-%d", i) && e.Properties["note"] != canaryProp+name("-anon-%d", i) {
				t.Errorf("person %d anonymous event reads %+v", i, e.Properties)
			}
		}
		if !seen[name("a-%d", i)] || !seen[name("t-%d", i)] {
			t.Errorf("person %d events: %v", i, seen)
		}
		pkg, err := c.Access(ctx, u)
		if err != nil || len(pkg.Events) < 2 {
			t.Errorf("Access %d: %v", i, err)
		}
	}
}

// TestSealExistingKeylessProfileWithClearRows: a restored backup: a profile
// with rows in clear and rows sealed under a data key that is gone.
func TestSealExistingKeylessProfileWithClearRows(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			p0 := s.open(t)
			ada := collectCanaries(t, p0.controller(t, nil, privacy.WithoutEncryption()), "ada")
			p := s.open(t)
			c := p.controller(t, nil)
			must(t, c.Collect(ctx, privacy.Track{MessageID: "ada-sealed", UserID: "ada", Event: "Later", Properties: map[string]any{"x": 1}, Timestamp: encTS}))
			_, err := s.dataDB(t).ExecContext(ctx, s.q(`DELETE FROM `+s.table("keyring")+` WHERE profile_id = $1`), string(ada.ID))
			must(t, err)
			for range 5 {
				n, err := p.data.SealExisting(ctx, 10)
				must(t, err)
				if n == 0 {
					break
				}
			}
			if left := clearRows(t, s); len(left) > 0 {
				t.Errorf("in clear: %v", left)
			}
			checkCanariesRead(t, c, "ada")
		})
	}
}
