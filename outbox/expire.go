package outbox

import (
	"context"
	"fmt"
	"maps"

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
	// no deliverer holds, and returns how many it removed. A message a
	// deliverer holds stays as it is: its call is under way, and a run
	// after it drops it if it comes back Pending or Dead. Deletions and
	// a request's messages are never expired.
	Expire(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs) (int, error)
}

// Expired reports whether m is the message of a collected event (any type
// but identify, which sets traits and stores no event) that was collected
// (its ReceivedAt) before the cutoff c sets for its Source, as
// profile.Cutoffs.Expired judges the event itself. A message without
// ReceivedAt is kept: the library's own (audience changes, corrections),
// and those enqueued before messages carried it.
func Expired(c profile.Cutoffs, m *destination.Message) bool {
	if m == nil || m.ReceivedAt.IsZero() || m.Type == destination.TypeIdentify {
		return false
	}
	return c.Expired(&profile.Event{Source: m.Source, ReceivedAt: m.ReceivedAt})
}

// Expire implements ExpiringTx.
func (tx *memTx) Expire(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs) (int, error) {
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
	n := len(s.expirable(of, c))
	s.mu.Unlock()
	tx.ops = append(tx.ops, func() {
		for _, m := range s.expirable(of, c) {
			s.drop(m)
		}
	})
	return n, nil
}

// expirable returns the messages Expire removes; the caller holds s.mu.
func (s *MemStore) expirable(of map[identity.ProfileID]bool, c profile.Cutoffs) []*memItem {
	var out []*memItem
	for _, m := range s.items {
		if of[m.Profile] && m.Request == "" && (m.State == Dead || m.State == Pending && m.owner == "") && Expired(c, m.Message) {
			out = append(out, m)
		}
	}
	return out
}
