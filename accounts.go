package privacy

// Account profiles, as Segment's accounts collection: a group call puts the
// group's traits on the account's own profile (identity.AccountProfileID)
// and links the person to it in their metadata, so that erasing the person
// removes their links with their profile. An account is no person: it has
// no identifiers in the graph, no audiences and no rights.

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// TypeGroupID is the identifier type an account profile lists as its
// external id, as Segment's accounts collection names it. It is no
// identifier of a person.
const TypeGroupID = "group_id"

// Account returns the account profile of the group groupID names: the
// traits group calls gave it (the value updated last wins; nil removes),
// its metadata (no message ids: they are the members'), and its group id as
// its one external id. The traits are the group's: a member's erasure
// leaves them, so a host must not send a person's own data as group traits. An account no
// group call named fails with ErrNotFound. The accounts a person is linked
// to are in their profile's Metadata.Accounts.
func (c *Controller) Account(ctx context.Context, groupID string) (*profile.Profile, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if err := checkName("GroupID", groupID); err != nil {
		return nil, err
	}
	if groupID == "" {
		return nil, fieldErrorf("GroupID", "empty")
	}
	pid := identity.AccountProfileID(groupID)
	p, err := c.profiles.Get(ctx, pid)
	if err != nil {
		return nil, backendError("reading account", err)
	}
	p.ID = pid
	p.ExternalIDs = []profile.ExternalID{{ID: identity.ID{Type: TypeGroupID, Value: groupID}, CreatedAt: p.Metadata.CreatedAt}}
	return p, nil
}

// accountOf returns the account profile a message writes to: a group
// call's, or "" for any other message.
func accountOf(msg *message) identity.ProfileID {
	if msg.kind != kindGroup {
		return ""
	}
	return identity.AccountProfileID(msg.groupID)
}

// noteAccount links the person of meta to the group a group call names, or
// moves the link's times. meta's Accounts are copied before they change.
func noteAccount(meta *profile.Metadata, msg *message) {
	if msg.kind != kindGroup {
		return
	}
	accounts := slices.Clone(meta.Accounts)
	i := slices.IndexFunc(accounts, func(l profile.AccountLink) bool { return l.GroupID == msg.groupID })
	if i < 0 {
		if len(accounts) >= profile.MaxAccountLinks {
			accounts = slices.Delete(accounts, 0, len(accounts)-profile.MaxAccountLinks+1)
		}
		accounts = append(accounts, profile.AccountLink{GroupID: msg.groupID, FirstLinked: msg.timestamp, LastLinked: msg.timestamp})
	} else {
		l := &accounts[i]
		if msg.timestamp.Before(l.FirstLinked) {
			l.FirstLinked = msg.timestamp
		}
		if msg.timestamp.After(l.LastLinked) {
			l.LastLinked = msg.timestamp
		}
	}
	meta.Accounts = accounts
}

// mergeAccounts adds from's links to into's, each group once with the
// earliest and latest times of both.
func mergeAccounts(into, from []profile.AccountLink) []profile.AccountLink {
	into = mergeSpans(into, from, func(l *profile.AccountLink) (string, *time.Time, *time.Time) {
		return l.GroupID, &l.FirstLinked, &l.LastLinked
	})
	slices.SortStableFunc(into, func(a, b profile.AccountLink) int { return a.FirstLinked.Compare(b.FirstLinked) })
	if n := len(into) - profile.MaxAccountLinks; n > 0 {
		into = slices.Delete(into, 0, n)
	}
	return into
}

// updateAccount writes a group call's traits to its account profile in
// ptx, creating it: the value updated last wins, nil removes. The account's
// stripe is held (resolveLocked). The account keeps no message id of the
// member's (an erasure of the member, which leaves the account, would leave
// it there): a repeat of the group call is the member's profile's to tell,
// and it is, before this is called.
func (c *Controller) updateAccount(ctx context.Context, ptx profile.Tx, msg *message, now time.Time) error {
	pid := identity.AccountProfileID(msg.groupID)
	p, err := ptx.Get(ctx, pid)
	meta := profile.Metadata{CreatedAt: now, FirstSeen: msg.timestamp}
	var cur map[string]profile.Trait
	switch {
	case err == nil:
		meta, cur = p.Metadata, p.Traits
	case !errors.Is(err, profile.ErrNotFound):
		return backendError("account read", err)
	}
	var u profile.Update
	source := msg.source
	if source == "" {
		source = profile.SourceGroup
	}
	applyTraits(&u, msg.props, source, msg.timestamp, cur)
	meta.Version++
	meta.UpdatedAt = now
	if msg.timestamp.Before(meta.FirstSeen) || meta.FirstSeen.IsZero() {
		meta.FirstSeen = msg.timestamp
	}
	if msg.timestamp.After(meta.LastSeen) {
		meta.LastSeen = msg.timestamp
	}
	u.Metadata = meta
	if err := ptx.Update(ctx, pid, u); err != nil {
		return backendError("account update", err)
	}
	return nil
}
