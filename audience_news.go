package privacy

// The audience news each destination that holds a person is owed with a
// collected message. Every holder is owed the message's changes; before
// them, a destination that did not hold every profile the changes are
// reckoned from is owed entries for the memberships it was never told of:
// one the message makes a holder, all of them; after a merge, one that held
// only some of the merged profiles, those of the others. So no destination
// hears an exit from an audience it was never told the person entered.

import (
	"context"
	"slices"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
)

// reckoning is what the changes of a message are reckoned from: the
// memberships of the profile before it (after merging: the union of every
// merged profile's, base) and of each profile it joined (before, by side as
// message.sides lists them).
type reckoning struct {
	base   []string
	before [][]string
}

// told returns the memberships a holder of the person after msg was told
// of: none for one the message made a holder, else those of the profiles it
// held (of the one profile, when the message merges none).
func (r *reckoning) told(msg *message, dest string) []string {
	if slices.Contains(msg.joined, dest) {
		return nil
	}
	if len(msg.sides) == 0 {
		return r.base
	}
	var out []string
	for i, side := range msg.sides {
		if i < len(r.before) && slices.Contains(side, dest) {
			out = append(out, r.before[i]...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// catchUps owes each of holders the entries base holds that it was not
// told of (grouped, so that destinations owed the same share one message),
// before the message's changes. version is the profile's after the message.
func (o *owed) catchUps(pid identity.ProfileID, ids func() []identity.ID, version uint64, r *reckoning, msg *message, holders []string, now time.Time) {
	if r == nil || len(r.base) == 0 {
		return
	}
	type group struct {
		entries []audience.Change
		to      []string
	}
	var groups []group
	for _, d := range holders {
		told := r.told(msg, d)
		var entries []audience.Change
		for _, k := range r.base {
			if _, found := slices.BinarySearch(told, k); !found {
				entries = append(entries, audience.Change{Key: k, Entered: true})
			}
		}
		if len(entries) == 0 {
			continue
		}
		i := slices.IndexFunc(groups, func(g group) bool { return slices.Equal(g.entries, entries) })
		if i < 0 {
			groups = append(groups, group{entries: entries})
			i = len(groups) - 1
		}
		groups[i].to = append(groups[i].to, d)
	}
	for _, g := range groups {
		o.audienceChanges(pid, ids(), version, "", g.entries, now, g.to)
	}
}

// newsOwed reports whether a message's changes, or the catch-ups reckon
// calls for, owe any destination audience news.
func newsOwed(changes []audience.Change, reckon *reckoning) bool {
	return len(changes) > 0 || reckon != nil && len(reckon.base) > 0
}

// oweNews owes holders, the destinations that hold the person after a
// stored message (those it went to, and those told of them before: an exit
// reaches a destination told of the entry), their audience news: the
// catch-ups reckon calls for (none when nil), then the message's changes.
// version is the profile's after the message.
func (c *Controller) oweNews(ctx context.Context, o *owed, pid identity.ProfileID, msg *message, matches []identity.Match,
	version uint64, holders []string, changes []audience.Change, reckon *reckoning, now time.Time) {
	if !newsOwed(changes, reckon) {
		return
	}
	var ids []identity.ID
	idsOnce := func() []identity.ID {
		if ids == nil {
			ids = c.collectedChangeIDs(ctx, pid, matches)
		}
		return ids
	}
	o.catchUps(pid, idsOnce, version, reckon, msg, holders, now)
	if len(changes) > 0 {
		o.audienceChanges(pid, idsOnce(), version, "", changes, now, holders)
	}
}
