package privacy

// Delivery to destinations: the outbox (package outbox) holds what each
// collected message, audience change and request owes them, written with the
// change; an engine (internal/deliver) delivers it, in this process and in
// every other one sharing the store. This file is its public face: Delivery,
// DeliveryStats, Flush, DeadLetters, Replay, and the items each change owes.

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/deliver"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
)

// Delivery configures how the outbox delivers to destinations. Zero fields
// keep their defaults.
type Delivery struct {
	// Horizon is how long an item is tried before it is given up on and
	// kept as a dead letter (default 24 hours, as Amazon EventBridge's
	// default; Segment retries for 4 hours, RudderStack's router for 3).
	Horizon time.Duration
	// MaxAttempts, when set, also gives up on an item after that many failed
	// calls (default: no bound but the horizon).
	MaxAttempts int
	// Backoff is the wait after the first failure, doubled after each further
	// one up to MaxBackoff (defaults 1s and 1h), each drawn at random between
	// half of it and all of it.
	Backoff, MaxBackoff time.Duration
	// Timeout bounds each call to a destination (default 30s). A call that
	// outlives it counts as failed, but its items wait for it to return
	// before anything later about the person goes to that destination.
	Timeout time.Duration
	// BatchSize bounds the messages per Send (default 100).
	BatchSize int
	// Lease is how long a deliverer holds the items it claimed, renewed
	// while it works (default 30s): a process that dies leaves its items to
	// the others, and to its next start, once the lease lapses.
	Lease time.Duration
	// Poll is how often an idle deliverer looks for work other processes
	// enqueued (default 1s); work enqueued here wakes it at once.
	Poll time.Duration
}

// Bounds of the Delivery settings: below them a deliverer could not renew
// its leases in time (a lapsed lease lets another deliverer send a person's
// later items while a call still runs), or would poll its store in a loop.
const (
	minDeliveryLease   = 100 * time.Millisecond
	minDeliveryPoll    = time.Millisecond
	minDeliveryTimeout = time.Millisecond
	maxDeliveryBatch   = 500
)

func (d Delivery) withDefaults() (deliver.Config, error) {
	for _, f := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{{"Horizon", d.Horizon, 0}, {"Backoff", d.Backoff, 0}, {"MaxBackoff", d.MaxBackoff, 0},
		{"Timeout", d.Timeout, minDeliveryTimeout}, {"Lease", d.Lease, minDeliveryLease}, {"Poll", d.Poll, minDeliveryPoll}} {
		if f.v < 0 || f.v != 0 && f.v < f.min {
			return deliver.Config{}, fieldErrorf("Delivery."+f.name, "%v: want 0 (the default) or at least %v", f.v, max(f.min, time.Nanosecond))
		}
	}
	if d.MaxAttempts < 0 {
		return deliver.Config{}, fieldErrorf("Delivery.MaxAttempts", "%d: want 0 (no bound) or more", d.MaxAttempts)
	}
	if d.BatchSize < 0 || d.BatchSize > maxDeliveryBatch {
		return deliver.Config{}, fieldErrorf("Delivery.BatchSize", "%d: want 0 (the default, 100) to %d", d.BatchSize, maxDeliveryBatch)
	}
	c := deliver.Config{Horizon: d.Horizon, MaxAttempts: d.MaxAttempts, Backoff: d.Backoff, MaxBackoff: d.MaxBackoff,
		Timeout: d.Timeout, BatchSize: d.BatchSize, Lease: d.Lease, Poll: d.Poll}
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.Horizon, 24 * time.Hour}, {&c.Backoff, time.Second}, {&c.MaxBackoff, time.Hour}, {&c.Timeout, 30 * time.Second},
		{&c.Lease, 30 * time.Second}, {&c.Poll, time.Second}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	c.MaxBackoff = max(c.MaxBackoff, c.Backoff)
	return c, nil
}

// DeliveryStats counts the outbox's work for one destination.
type DeliveryStats struct {
	// Delivered messages and deletions the destination accepted, since New.
	Delivered uint64
	// Failed ones were given up on, since New (they are dead letters).
	Failed uint64
	// NotSupported deletions the destination cannot do, since New.
	NotSupported uint64
	// Retries counts failed calls that were tried again, since New.
	Retries uint64
	// Pending items wait for delivery, now, in the outbox (every process's).
	Pending int
	// Dead items were given up on and wait, now, in the outbox for Replay.
	Dead int
}

// DeliveryStats returns, per destination name, what this Controller
// delivered, gave up on and retried, and what the outbox holds now, for
// every destination it holds something for: one removed from the
// configuration keeps its work pending, and counted, until it comes back.
func (c *Controller) DeliveryStats(ctx context.Context) (map[string]DeliveryStats, error) {
	counts, err := c.outbox.Stats(ctx)
	if err != nil {
		return nil, backendError("outbox stats", err)
	}
	out := make(map[string]DeliveryStats, len(c.destinations))
	for name, s := range c.deliver.Stats() {
		out[name] = DeliveryStats{Delivered: s.Delivered, Failed: s.Failed, NotSupported: s.NotSupported, Retries: s.Retries}
	}
	for name, n := range counts {
		s := out[name]
		s.Pending, s.Dead = n.Pending, n.Dead
		out[name] = s
	}
	return out, nil
}

// Flush returns once the outbox holds nothing pending for this Controller's
// destinations (delivered, or given up on) and the requests that waited for
// it have recorded their outcomes, or when ctx ends (then with an error saying
// how much is still pending). Tests and shutdown call it to wait for delivery.
func (c *Controller) Flush(ctx context.Context) error {
	if err := c.deliver.Flush(ctx); err != nil {
		return backendError("flush", err)
	}
	c.checkAwaiting(ctx)
	return nil
}

// DeadLetter is an item given up on: its destination, what it was (the
// message's id, or the deletion's request), when it was enqueued, how often
// it was tried and why the last call failed. It names nobody.
type DeadLetter struct {
	ID          uint64
	Destination string
	// Request is the request that owed it, if any.
	Request string
	// MessageID is a message's id; a deletion has none.
	MessageID string
	Deletion  bool
	Enqueued  time.Time
	Attempts  int
	LastError string
}

// DeadLetters lists up to limit (at most 1000) dead letters of the
// destination ("" for every one) whose ID is greater than after, by ID.
func (c *Controller) DeadLetters(ctx context.Context, dest string, after uint64, limit int) ([]DeadLetter, error) {
	if limit <= 0 || limit > 1000 {
		return nil, fieldErrorf("limit", "%d: want 1 to 1000", limit)
	}
	if !storableText(dest) {
		return nil, fieldErrorf("dest", "not valid UTF-8, or holds a NUL byte")
	}
	items, err := c.outbox.Dead(ctx, dest, after, limit)
	if err != nil {
		return nil, backendError("outbox dead letters", err)
	}
	out := make([]DeadLetter, len(items))
	for i, it := range items {
		out[i] = DeadLetter{ID: it.ID, Destination: it.Destination, Request: it.Request, Deletion: it.Deletion != nil,
			Enqueued: it.Enqueued, Attempts: it.Attempts, LastError: it.LastError}
		if it.Message != nil {
			out[i].MessageID = it.Message.MessageID
		}
	}
	return out, nil
}

// Replay makes the dead letters among ids pending again, tried afresh (their
// horizon restarted) after what was enqueued for the same person since, under
// new IDs, and returns how many it replayed. A message about a person erased
// since is never replayed: the erasure removed it.
func (c *Controller) Replay(ctx context.Context, ids ...uint64) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	n, err := c.outbox.Replay(ctx, ids, time.Now())
	if err != nil {
		return n, backendError("outbox replay", err)
	}
	c.deliver.Wake()
	return n, nil
}

// owed collects the items a change owes the destinations, to enqueue in its
// transaction.
type owed struct {
	c     *Controller
	dests []string // the destinations owed; nil: the Controller's
	items []outbox.Item
	at    time.Time // when the first item was owed: every item's Enqueued
}

// now is when the change's items are enqueued: one time for all, so that a
// store may keep the messages one person is owed by a batch together
// (sqlstore writes them as one row).
func (o *owed) now() time.Time {
	if o.at.IsZero() {
		o.at = time.Now()
	}
	return o.at
}

// names returns the destinations owed.
func (o *owed) names() []string {
	if o.dests != nil {
		return o.dests
	}
	return o.c.destinations
}

// message owes m to every destination; request, when set, awaits it, and
// key makes it the only one of its kind.
//
// The destinations' items share m: a store copies what it enqueues (or
// encodes it), and enqueue follows at once.
func (o *owed) message(m destination.Message, request, key string) {
	o.messageTo(o.names(), m, request, key)
}

// messageTo owes m to the destinations named, as message does.
func (o *owed) messageTo(names []string, m destination.Message, request, key string) {
	if len(names) == 0 {
		return
	}
	now := o.now()
	for _, name := range names {
		o.items = append(o.items, outbox.Item{Destination: name, Profile: m.ProfileID, Request: request, Key: key,
			Message: &m, Enqueued: now})
	}
}

// deletion owes d to every destination; its request awaits it.
func (o *owed) deletion(d destination.Deletion) {
	now, key := o.now(), d.RequestID+"/"+string(d.ProfileID)+"/delete"
	for _, name := range o.names() {
		o.items = append(o.items, outbox.Item{Destination: name, Profile: d.ProfileID, Request: d.RequestID,
			Key: key, Deletion: &d, Enqueued: now})
	}
}

// audienceChanges owes "Audience Entered" and "Audience Exited" for the
// profile's changes, addressed by the identifiers given. cause tells apart
// changes at one profile version: "" for a collected message (each bumps
// the version), a request's id, or the time of a refresh. (An objection and
// its lifting change memberships, not the version: without it, a second
// exit at one version would repeat the first's id, and a destination that
// drops repeats would keep the person in.)
//
// to, when not nil, names the destinations owed them: those that hold the
// person (their recipients), so that no destination a message's
// Integrations or consent kept the person from hears of them this way.
func (o *owed) audienceChanges(pid identity.ProfileID, ids []identity.ID, version uint64, cause string, changes []audience.Change, now time.Time, to []string) {
	if to == nil {
		to = o.names()
	}
	for _, ch := range changes {
		event, verb := destination.AudienceExited, "exited"
		if ch.Entered {
			event, verb = destination.AudienceEntered, "entered"
		}
		o.messageTo(to, destination.Message{
			// Stable across retries: the same change of the same profile version.
			MessageID:  audienceMessageID(pid, ch.Key, verb, version, cause),
			Type:       destination.TypeTrack,
			Event:      event,
			ProfileID:  pid,
			IDs:        ids,
			Properties: map[string]any{"audience_key": ch.Key},
			Timestamp:  now,
		}, "", "")
	}
}

// audienceMessageID is an audience change's message id, the same for a
// redo of the same change.
func audienceMessageID(pid identity.ProfileID, key, verb string, version uint64, cause string) string {
	id := string(pid) + ":" + key + ":" + verb + ":" + strconv.FormatUint(version, 10)
	if cause != "" {
		id += ":" + cause
	}
	return id
}

// collected owes the collected message, addressed by its own identifiers,
// to the destinations advanceMetadata routed it to; receivedAt is when it
// was collected, its stored event's ReceivedAt (retention counts from it).
func (o *owed) collected(pid identity.ProfileID, msg *message, matches []identity.Match, receivedAt time.Time) {
	ids := matchedIDs(matches)
	m := destination.Message{MessageID: msg.messageID, Type: msg.kind, ProfileID: pid, IDs: ids,
		Context: msg.context, Timestamp: msg.timestamp, Source: msg.source, ReceivedAt: receivedAt}
	switch msg.kind {
	case kindIdentify:
		m.Traits = msg.traits // nil values travel too: they remove the trait downstream
	case kindTrack:
		m.Event, m.Properties = msg.event, msg.props
	case kindPage, kindScreen:
		m.Name, m.Category, m.Properties = msg.event, msg.category, msg.props
	case kindGroup:
		m.GroupID, m.Traits = msg.groupID, msg.props // the group's traits
	case kindAlias:
		m.PreviousID = msg.previous
	}
	o.messageTo(msg.routed, m, "", "")
}

// routeMessage returns the destinations of names a collected message goes
// to: as its Integrations say (route), and, when it carries the person's
// consent preferences, only those that declare no consent category or whose
// every category the person consented to (destination.Consent). The
// "Segment Consent Preference Updated" event is the exception, as in
// Segment: it goes whatever the preferences to the destinations that hold
// the person already (held, their recipients), so that a destination
// learns that consent was withdrawn; one the person's data never reached
// has nothing to withdraw, and the notice would make it a holder.
func (c *Controller) routeMessage(msg *message, names []string, held []profile.Recipient) []string {
	names = route(msg.integrations, names)
	if !msg.hasConsent || len(c.consent) == 0 {
		return names
	}
	notice := msg.consentEvent()
	out := names[:0:0]
	for _, name := range names {
		if consented(msg.consent, c.consent[name]) ||
			notice && slices.ContainsFunc(held, func(r profile.Recipient) bool { return r.Name == name }) {
			out = append(out, name)
		}
	}
	return out
}

// consented reports whether every one of categories is true in prefs.
func consented(prefs map[string]any, categories []string) bool {
	for _, cat := range categories {
		if prefs[cat] != true {
			return false
		}
	}
	return true
}

// consentCategories returns the categories of each destination that
// declares some.
func consentCategories(ds []destination.Destination) map[string][]string {
	var out map[string][]string
	for _, d := range ds {
		c, ok := d.(destination.Consent)
		if !ok {
			continue
		}
		if cats := slices.DeleteFunc(slices.Clone(c.ConsentCategories()), func(s string) bool { return s == "" }); len(cats) > 0 {
			if out == nil {
				out = map[string][]string{}
			}
			out[d.Name()] = cats
		}
	}
	return out
}

// route returns the destinations of names a message with the integrations
// given goes to, as Segment routes: a destination named true (or an
// object of its options) is sent, one named false is not, and those not
// named follow "All", true when absent. Nil integrations send to all.
func route(integrations map[string]any, names []string) []string {
	if integrations == nil {
		return names
	}
	all := true
	if v, ok := integrations["All"]; ok && v != nil {
		all = v != false
	}
	out := names[:0:0]
	for _, name := range names {
		on := all
		if v, ok := integrations[name]; ok && v != nil {
			on = v != false
		}
		if on {
			out = append(out, name)
		}
	}
	return out
}

// matchedIDs returns the identifiers of a message's matches.
func matchedIDs(matches []identity.Match) []identity.ID {
	ids := make([]identity.ID, len(matches))
	for i, m := range matches {
		ids[i] = m.ID
	}
	return ids
}

// collectedChangeIDs returns the identifiers an audience change a collected
// message caused is owed with: every identifier of the profile, or, when
// they cannot be read, the message's own, which the destination matches
// the person by as well (a change without any would match nobody).
func (c *Controller) collectedChangeIDs(ctx context.Context, pid identity.ProfileID, matches []identity.Match) []identity.ID {
	ids, err := nodeIDs(ctx, c.graph.Node, pid)
	if err != nil {
		c.log.WarnContext(ctx, "reading a profile's identifiers failed; an audience change is owed with the message's", "profile", pid, "err", describe(err))
		return matchedIDs(matches)
	}
	return ids
}

// enqueue writes what is owed in the transaction.
func (o *owed) enqueue(ctx context.Context, tx outbox.Tx) error {
	if len(o.items) == 0 {
		return nil
	}
	return backendError("outbox enqueue", tx.Enqueue(ctx, o.items))
}

// nodeIDs returns the identifiers linked to the profile, read through read
// (a transaction's or the graph's Node), or none when it has no node. A
// failed read fails: an audience change owed without identifiers would
// reach a destination that can match it to nobody.
func nodeIDs(ctx context.Context, read func(context.Context, identity.ProfileID) (*identity.Node, error), pid identity.ProfileID) ([]identity.ID, error) {
	n, err := read(ctx, pid)
	switch {
	case errors.Is(err, identity.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, backendError("reading identifiers", err)
	}
	ids := make([]identity.ID, len(n.Links))
	for i, l := range n.Links {
		ids[i] = l.ID
	}
	return ids, nil
}

// scrubDelivery is the delivery engine's Scrub: a destination's error,
// kept in the outbox and the receipt, names the batch's people by keyed hash
// and their traits and properties by name.
func (c *Controller) scrubDelivery(text string, batch []outbox.Item) string {
	if text == "" {
		return ""
	}
	var ids []identity.ID
	values := map[string]any{}
	for _, it := range batch {
		if m := it.Message; m != nil {
			ids = append(ids, m.IDs...)
			for k, v := range m.Traits {
				values[k] = []any{values[k], v}
			}
			for k, v := range m.Properties {
				values[k] = []any{values[k], v}
			}
		}
		if d := it.Deletion; d != nil {
			ids = append(ids, d.IDs...)
		}
	}
	return c.redactText(text, ids, values)
}
