package outbox

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// ExpiringTx is implemented by outbox transactions that can drop the
// messages of events that retention deleted from the profile store
// (storage limitation, Art. 5(1)(e)): an event the library no longer holds
// must not leave it later from a queue or a dead letter, values and all.
// The Controller calls Expire for each page of profiles it prunes, after
// the profile store's commit; a run resumed after a crash calls it again
// for that page, so Expire goes by the cutoffs, not by the events pruned.
type ExpiringTx interface {
	// Expire removes the Pending and Dead messages of the profiles pids
	// that Expired says have expired under c, that no request awaits and
	// no deliverer holds at now, and returns how many it removed. A
	// message is held while its lease runs (a store whose renewals can
	// wait on Expire's locks holds it a while past, as it holds one Purge
	// emptied): one whose call is under way stays as it is, and a run
	// after it drops it if it comes back Pending or Dead; one whose lease
	// lapsed long ago (its deliverer died) goes. Deletions and a
	// request's messages are never expired. A message moved meanwhile by
	// a transaction that committed before Expire began to change it
	// (Replay gives a dead letter a new ID) is found under its new ID.
	Expire(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs, now time.Time) (int, error)
}

// Expired reports whether m is the message of a collected event that was
// collected (its ReceivedAt) before the cutoff c sets for its Source, as
// profile.Cutoffs.Expired judges the event itself. Only tracks, pages and
// screens expire: an identify sets traits, a group the account's traits
// and the person's link to it, an alias links identifiers, all of which
// the library keeps after retention deleted their events, so their
// messages stay. A message without ReceivedAt is kept: the library's own
// (audience changes, corrections), and those enqueued before messages
// carried it.
func Expired(c profile.Cutoffs, m *destination.Message) bool {
	if m == nil || m.ReceivedAt.IsZero() {
		return false
	}
	switch m.Type {
	case destination.TypeTrack, destination.TypePage, destination.TypeScreen:
		return c.Expired(&profile.Event{Source: m.Source, ReceivedAt: m.ReceivedAt})
	}
	return false
}

// Expire implements ExpiringTx.
func (tx *memTx) Expire(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs, now time.Time) (int, error) {
	if err := tx.check(ctx); err != nil {
		return 0, err
	}
	for i, pid := range pids {
		if pid == "" {
			return 0, fmt.Errorf("%w: Expire: pids[%d] is empty", ErrInvalid, i)
		}
	}
	if c.Zero() || len(pids) == 0 {
		return 0, nil
	}
	c.Sources = maps.Clone(c.Sources) // the caller's map may change before Commit
	of := make(map[identity.ProfileID]bool, len(pids))
	for _, pid := range pids {
		of[pid] = true
	}
	s := tx.s
	s.mu.Lock()
	n := len(s.expirable(of, c, now))
	s.mu.Unlock()
	tx.ops = append(tx.ops, func() {
		for _, m := range s.expirable(of, c, now) {
			s.drop(m)
		}
	})
	return n, nil
}

// expirable returns the messages Expire removes; the caller holds s.mu.
func (s *MemStore) expirable(of map[identity.ProfileID]bool, c profile.Cutoffs, now time.Time) []*memItem {
	var out []*memItem
	for _, m := range s.items {
		held := m.owner != "" && !m.until.Before(now) // as Claim judges it
		if of[m.Profile] && m.Request == "" && (m.State == Dead || m.State == Pending && !held) && Expired(c, m.Message) {
			out = append(out, m)
		}
	}
	return out
}
