package privacy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/txscope"
)

// BatchSize is how many messages of a CollectBatch are stored together, in one
// transaction per backend (one database transaction when the backends share a
// database). Larger batches are cut into pieces of this size.
const BatchSize = 500

// CollectBatch collects many messages, as Collect collects each, in far fewer
// backend calls: the common message, about a person already known by all its
// identifiers, is stored together with the rest of its batch, which costs a
// few statements and one commit per BatchSize messages on a SQL backend
// instead of several statements and a commit per message. Backends that
// implement the optional batch interfaces (identity.BatchReader,
// suppression.BatchReader, profile.BatchTx, audience.BatchTx) are asked once
// per batch; others once per message or profile, still within one
// transaction.
//
// Every message is handled on its own: a message with bad input, or about a
// person who objected, is refused without keeping the others from being
// stored, and a repeated message id is stored once, as with Collect. The
// returned error is nil when every message was stored (or recognised as a
// repeat), ErrClosed when the Controller is closed, and a *BatchError
// otherwise, whose Errs says which messages were
// not stored and why; errors.Is(err, ErrSuppressed) and the like work on it.
//
// Messages that create, link or merge profiles are collected one at a time, as
// by Collect, after the rest of their batch, and so are the later messages of
// the batch about the same people, so that each person's messages are stored
// in the order given. Should the batch fail as a whole (a backend refusing one
// message's text, say), its messages are collected one at a time too, each
// with its own outcome.
//
// The gain is in round trips and commits: on the in-memory backends, which
// have neither, a batch costs a little more than one Collect per message.
func (c *Controller) CollectBatch(ctx context.Context, msgs []Message) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	ctx, span := c.batchSpan(ctx, len(msgs))
	errs := make([]error, len(msgs))
	defer endBatchSpan(span, errs)
	items := make([]batchItem, 0, min(len(msgs), BatchSize))
	for start := 0; start < len(msgs); start += BatchSize {
		items = items[:0]
		in := c.intake()
		for i, m := range msgs[start:min(start+BatchSize, len(msgs))] {
			it := batchItem{index: start + i}
			var err error
			if it.ids, err = prepareMessage(&in, m, &it.msg, nil); err != nil {
				c.stats.refused.Add(1)
				errs[it.index] = err
				continue
			}
			items = append(items, it)
		}
		c.collectBatch(ctx, items, errs)
		// What the batch left to the one-at-a-time path, in the given order.
		for i := range items {
			if it := &items[i]; it.outcome == outcomeAlone {
				errs[it.index] = c.Collect(ctx, msgs[it.index])
			}
		}
	}
	return newBatchError(errs)
}

// BatchError reports the messages of a CollectBatch that were not stored.
type BatchError struct {
	// Errs has an entry per message of the batch, in order: nil for a message
	// stored (or recognised as a repeat), the reason otherwise.
	Errs []error
}

// newBatchError returns a *BatchError for errs, or nil when every entry is nil.
func newBatchError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return &BatchError{Errs: errs}
		}
	}
	return nil
}

// Error says how many messages were not stored and why the first was not.
func (e *BatchError) Error() string {
	n, first := 0, -1
	for i, err := range e.Errs {
		if err != nil {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	if first < 0 {
		return "privacy: every message of the batch was collected"
	}
	return fmt.Sprintf("privacy: %d of %d messages not collected; message %d: %v", n, len(e.Errs), first, e.Errs[first])
}

// Unwrap returns the errors of the messages not stored, so that errors.Is and
// errors.As look into them.
func (e *BatchError) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// batchOutcome is what became of one message of a batch.
type batchOutcome uint8

const (
	outcomePending    batchOutcome = iota
	outcomeAlone                   // left to the one-at-a-time path
	outcomeSuppressed              // the person objected
	outcomeDuplicate               // the message id was recorded before
	outcomeStored
)

// batchItem is one valid message of a batch.
type batchItem struct {
	index   int // in the caller's slice
	msg     message
	ids     []identity.ID
	matches []identity.Match
	profile identity.ProfileID
	outcome batchOutcome
	version uint64                   // the profile's version after the message
	holders []string                 // the destinations that hold the person after it (its recipients)
	now     time.Time                // when the batch was stored
	changes []audience.Change        // memberships the message changed
	reckon  *reckoning               // with msg.joined, what the changes are reckoned from
	traits  map[string]profile.Trait // with audiences, the traits after it of a profile an identify of the batch changes
	update  int                      // its update's index among the batch's
	// repeat: an attempt found the message id recorded for the profile
	// before; it survives the resets between attempts. found: this attempt did.
	repeat, found bool
}

// reset forgets what an attempt derived, keeping the message and what
// earlier attempts learnt.
func (it *batchItem) reset() {
	*it = batchItem{index: it.index, msg: it.msg, ids: it.ids, repeat: it.repeat}
}

// errRedoBatch: the store reported repeats that the updates built after them
// assumed applied; the attempt is made again with them known.
var errRedoBatch = errors.New("privacy: the batch is stored again without its repeats")

// collectBatch stores the batch's items, retrying it as a whole after a
// conflict the backends marked txscope.ErrRetry, and records each item's
// outcome (the errors of those refused or failed in errs).
func (c *Controller) collectBatch(ctx context.Context, items []batchItem, errs []error) {
	var err error
	for attempt := 1; ; attempt++ {
		for i := range items {
			items[i].reset()
		}
		sctx, closeScope := c.openScope(ctx)
		var recount []identity.ProfileID
		recount, err = c.storeBatch(sctx, items)
		closeScope()
		if err == nil {
			c.finishBatch(ctx, items, recount, errs)
			return
		}
		if (!errors.Is(err, txscope.ErrRetry) && err != errRedoBatch) || ctx.Err() != nil || attempt == retryAttempts {
			break
		}
		if err != errRedoBatch {
			pause(ctx, attempt)
		}
	}
	for i := range items {
		it := &items[i]
		switch {
		case ctx.Err() != nil:
			errs[it.index] = err
		default:
			// One message can fail a whole batch (text a database refuses, a
			// conflict retried too often): each goes on its own, and only
			// those that fail alone report an error.
			it.outcome = outcomeAlone
		}
	}
}

// finishBatch counts the batch's outcomes, tells the destinations what was
// stored and recomputes the memberships an audience commit failed to store.
func (c *Controller) finishBatch(ctx context.Context, items []batchItem, recount []identity.ProfileID, errs []error) {
	for i := range items {
		it := &items[i]
		switch it.outcome {
		case outcomeSuppressed:
			c.stats.suppressed.Add(1)
			errs[it.index] = ErrSuppressed
		case outcomeDuplicate:
			c.stats.duplicates.Add(1)
		case outcomeStored:
			c.stats.collected.Add(1)
		}
	}
	for _, pid := range recount {
		if err := c.reevaluate(context.WithoutCancel(ctx), pid, repairState); err != nil {
			c.stale.Store(pid, struct{}{}) // the next Refresh tries again
			c.log.ErrorContext(ctx, "recomputing memberships failed; Refresh will retry", "profile", pid, "err", describe(err))
		}
	}
}

// storeBatch is one attempt at storing a batch in one transaction per backend.
// It stores the messages whose identifiers all belong to one known profile,
// and marks the others outcomeAlone. It returns the profiles whose
// memberships must be recomputed because the audience commit failed after the
// profiles' (backends that share no transaction only).
func (c *Controller) storeBatch(ctx context.Context, items []batchItem) (recount []identity.ProfileID, err error) {
	set := c.set.Load() // one definition of the audiences for the whole attempt
	before, versioned := c.memGraphVersion()
	if err := c.lookupBatch(ctx, items); err != nil {
		return nil, err
	}
	keepOrder(items)
	stripes := make([]uint16, 0, 4*len(items))
	for i := range items {
		if it := &items[i]; it.outcome == outcomePending {
			stripes = c.locks.appendMatches(stripes, it.matches)
		}
	}
	var held lockSet
	held.setAll(stripes)
	c.locks.lock(&held)
	defer c.locks.unlock(&held)

	// The first look was unlocked: look again, under the locks of this process
	// and, through the backend, of the others (on the in-memory graph, only
	// when a commit followed the first look). A message whose identifiers
	// moved meanwhile goes the one-at-a-time way; its stripes may not be held.
	if c.remoteLocked(ctx) {
		var all []identity.Match
		for i := range items {
			if it := &items[i]; it.outcome == outcomePending {
				all = append(all, it.matches...)
			}
		}
		if err := c.lockRemote(ctx, all, nil); err != nil {
			return nil, err
		}
	}
	if now, _ := c.memGraphVersion(); !versioned || now != before {
		if err := c.lookAgain(ctx, items); err != nil {
			return nil, err
		}
	}

	pids := batchProfiles(items)
	if len(pids) == 0 {
		return nil, nil
	}
	if err := c.admitBatch(ctx, items, pids); err != nil {
		return nil, err
	}
	if pids = batchProfiles(items); len(pids) == 0 {
		return nil, nil
	}

	ptx, err := c.profiles.Begin(ctx)
	if err != nil {
		return nil, backendError("profile begin", err)
	}
	defer ptx.Rollback(ctx)
	now := c.now()
	updates, err := c.buildBatchUpdates(ctx, ptx, set, items, pids, now)
	if err != nil {
		return nil, err
	}
	if err := updateBatch(ctx, ptx, items, updates); err != nil {
		return nil, err
	}
	if repeatsBefore(items) {
		return nil, errRedoBatch
	}

	// Audiences, for the identifies and the events some audience counts.
	atx, err := c.batchAudiences(ctx, ptx, set, items, updates)
	if err != nil {
		return nil, err
	}
	if atx != nil {
		defer atx.Rollback(ctx)
	}
	var otx outbox.Tx
	if len(c.destinations) > 0 {
		if otx, err = c.outbox.Begin(ctx); err != nil {
			return nil, backendError("outbox begin", err)
		}
		defer otx.Rollback(ctx)
	}
	if c.scoped {
		// As in store: the audiences and the outbox commit first when the
		// transaction is shared, what the messages owe written with them.
		if err := c.oweBatch(ctx, otx, items); err != nil {
			return nil, err
		}
		if atx != nil {
			if err := atx.Commit(ctx); err != nil {
				return nil, backendError("audience commit", err)
			}
		}
		if otx != nil {
			if err := otx.Commit(ctx); err != nil {
				return nil, backendError("outbox commit", err)
			}
		}
	}
	if err := ptx.Commit(ctx); err != nil {
		return nil, backendError("profile commit", err)
	}
	if atx != nil && !c.scoped {
		if err := atx.Commit(detach(ctx)); err != nil {
			// The messages are stored: recompute their memberships instead.
			c.log.ErrorContext(ctx, "audience commit failed; recomputing memberships", "profiles", len(pids), "err", describe(err))
			for i := range items {
				if it := &items[i]; concernsAudiences(set, it) {
					it.changes = nil
					recount = append(recount, it.profile)
				}
			}
			slices.Sort(recount)
			recount = slices.Compact(recount)
		}
	}
	if otx != nil && !c.scoped {
		// As in store: what is owed follows what was stored.
		err := c.oweBatch(detach(ctx), otx, items)
		if err == nil {
			err = backendError("outbox commit", otx.Commit(detach(ctx)))
		}
		if err != nil {
			c.log.ErrorContext(ctx, "the outbox did not take what stored messages owe the destinations", "profiles", len(pids), "err", describe(err))
		}
	}
	if otx != nil {
		c.deliver.Wake()
	}
	return recount, nil
}

// oweBatch writes in otx what the batch's stored messages owe the
// destinations, in the batch's order.
func (c *Controller) oweBatch(ctx context.Context, otx outbox.Tx, items []batchItem) error {
	if otx == nil {
		return nil
	}
	o := owed{c: c}
	for i := range items {
		it := &items[i]
		if it.outcome != outcomeStored {
			continue
		}
		o.collected(it.profile, &it.msg, it.matches, it.now)
		c.oweNews(ctx, &o, it.profile, &it.msg, it.matches, it.version, it.holders, it.changes, it.reckon, it.now)
	}
	return o.enqueue(ctx, otx)
}

// lookAgain looks the pending items' identifiers up again: a message whose
// identifiers moved since the first look goes the one-at-a-time way.
func (c *Controller) lookAgain(ctx context.Context, items []batchItem) error {
	first := make([]identity.ProfileID, len(items))
	for i := range items {
		first[i] = items[i].profile
	}
	if err := c.lookupBatch(ctx, items); err != nil {
		return err
	}
	for i := range items {
		if it := &items[i]; it.outcome == outcomePending && it.profile != first[i] {
			it.outcome = outcomeAlone
		}
	}
	keepOrder(items)
	return nil
}

// lookupBatch looks up the identifiers of the pending items in one call and
// sets their matches and profile. An item whose identifiers do not all belong
// to one known profile is marked outcomeAlone.
func (c *Controller) lookupBatch(ctx context.Context, items []batchItem) error {
	ids := make([]identity.ID, 0, 2*len(items))
	for i := range items {
		if it := &items[i]; it.outcome == outcomePending {
			ids = append(ids, it.ids...)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	matches, err := identity.LookupAll(ctx, c.graph, ids, make([]identity.Match, 0, len(ids)))
	if err != nil {
		return backendError("identity lookup", err)
	}
	for i := range items {
		it := &items[i]
		if it.outcome != outcomePending {
			continue
		}
		it.matches, matches = matches[:len(it.ids):len(it.ids)], matches[len(it.ids):]
		it.profile = it.matches[0].Profile
		for _, m := range it.matches {
			if m.Profile != it.profile {
				it.profile = ""
			}
		}
		// A group call writes to its account's profile too, under its
		// stripe, and an alias's previous id is checked against the
		// suppression list: the one-at-a-time path takes them.
		if it.profile == "" || it.msg.kind == kindGroup || it.msg.previous != "" {
			it.outcome = outcomeAlone
		}
	}
	return nil
}

// keepOrder leaves to the one-at-a-time path every pending item about an
// identifier or a profile of an earlier item left to it, so that each person's
// messages are stored in the order given: the one-at-a-time path runs after
// the batch.
func keepOrder(items []batchItem) {
	var ids map[identity.ID]bool
	var pids map[identity.ProfileID]bool
	for i := range items {
		it := &items[i]
		switch it.outcome {
		case outcomePending:
			if ids == nil {
				continue
			}
			for _, m := range it.matches {
				if ids[m.ID] || (m.Profile != "" && pids[m.Profile]) {
					it.outcome = outcomeAlone
					break
				}
			}
			if it.outcome != outcomeAlone {
				continue
			}
		case outcomeAlone:
		default:
			continue
		}
		if ids == nil {
			ids, pids = map[identity.ID]bool{}, map[identity.ProfileID]bool{}
		}
		for _, m := range it.matches {
			ids[m.ID] = true
			if m.Profile != "" {
				pids[m.Profile] = true
			}
		}
	}
}

// repeatsBefore reports whether an item the store found repeated in this
// attempt comes before another stored item of its profile: that item's update
// assumed the repeat applied (its traits, its version), so the attempt must be
// made again, with the repeat known (batchItem.repeat).
func repeatsBefore(items []batchItem) bool {
	var repeated map[identity.ProfileID]bool
	for i := range items {
		switch it := &items[i]; {
		case it.found:
			if repeated == nil {
				repeated = map[identity.ProfileID]bool{}
			}
			repeated[it.profile] = true
		case it.outcome == outcomeStored && repeated[it.profile]:
			return true
		}
	}
	return false
}

// batchProfiles returns the distinct profiles of the pending items, sorted.
func batchProfiles(items []batchItem) []identity.ProfileID {
	var pids []identity.ProfileID
	for i := range items {
		if it := &items[i]; it.outcome == outcomePending {
			pids = append(pids, it.profile)
		}
	}
	slices.Sort(pids)
	return slices.Compact(pids)
}

// buildBatchUpdates reads the metadata of the batch's profiles and returns an
// Update per pending item, in order, each profile's metadata carried from one
// of its messages to the next. A message id seen earlier in the batch for the
// same profile is marked a duplicate at once.
func (c *Controller) buildBatchUpdates(ctx context.Context, ptx profile.Tx, set *audience.Set, items []batchItem, pids []identity.ProfileID, now time.Time) ([]profile.BatchUpdate, error) {
	metas, err := metadataBatch(ctx, ptx, pids)
	if err != nil {
		return nil, backendError("profile read", err)
	}
	// An identify needs its profile's traits, for last-updated-wins; they are
	// carried from one message of the batch to the next like the metadata.
	traits := map[identity.ProfileID]map[string]profile.Trait{}
	for i := range items {
		it := &items[i]
		if it.outcome != outcomePending || it.msg.kind != kindIdentify {
			continue
		}
		if _, ok := traits[it.profile]; ok {
			continue
		}
		p, err := ptx.Get(ctx, it.profile)
		switch {
		case err == nil:
			traits[it.profile] = p.Traits
		case errors.Is(err, profile.ErrNotFound):
			traits[it.profile] = nil
		default:
			return nil, backendError("profile read", err)
		}
	}
	withAudiences := set.Len() > 0
	type seenKey struct {
		pid identity.ProfileID
		id  string
	}
	seen := make(map[seenKey]bool, len(items))
	updates := make([]profile.BatchUpdate, 0, len(items))
	events := make([]profile.Event, len(items))
	for i := range items {
		it := &items[i]
		if it.outcome != outcomePending {
			continue
		}
		k := seenKey{it.profile, it.msg.messageID}
		if seen[k] || it.repeat {
			it.outcome = outcomeDuplicate
			continue
		}
		seen[k] = true
		meta, ok := metas[it.profile]
		if !ok {
			// Linked in the graph, but the profile's commit was lost: start it
			// afresh, as buildUpdate does.
			meta = freshMetadata(&it.msg, now)
		}
		// Each update keeps its own recipients: the next one changes them.
		meta.Recipients = slices.Clone(meta.Recipients)
		it.msg.joined = c.advanceMetadata(&meta, &it.msg, now)
		metas[it.profile] = meta
		it.version, it.now, it.update, it.holders = meta.Version, now, len(updates), c.holders(meta.Recipients, nil)
		u := profile.Update{MessageID: it.msg.messageID, Metadata: meta}
		if it.msg.kind == kindIdentify {
			cur := traits[it.profile]
			applyIdentify(&u, &it.msg, cur)
			// cur is the batch's own copy: bring it to the state after u. (Should
			// u turn out a repeat, the batch is stored again without it:
			// repeatsBefore.)
			traits[it.profile] = traitsAfter(cur, &u)
		} else {
			events[i] = eventOf(&it.msg, now)
			u.Event, u.EncodedContext = &events[i], it.msg.contextJSON
		}
		if cur, ok := traits[it.profile]; ok && withAudiences {
			// The audiences see the traits as they were after this message,
			// not as the batch leaves them.
			it.traits = make(map[string]profile.Trait, len(cur))
			maps.Copy(it.traits, cur)
		}
		updates = append(updates, profile.BatchUpdate{Profile: it.profile, Update: u})
	}
	return updates, nil
}

// updateBatch applies the updates of the pending items, in one call when ptx
// is a profile.BatchTx, and marks each item stored or a duplicate.
func updateBatch(ctx context.Context, ptx profile.Tx, items []batchItem, updates []profile.BatchUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	dups, err := updateAll(ctx, ptx, updates)
	if err != nil {
		return backendError("profile update", err)
	}
	j := 0
	for i := range items {
		if it := &items[i]; it.outcome == outcomePending {
			if dups[j] {
				it.outcome, it.repeat, it.found = outcomeDuplicate, true, true
			} else {
				it.outcome = outcomeStored
			}
			j++
		}
	}
	return nil
}

// batchAudiences counts the events of the stored items and re-evaluates their
// profiles' memberships, in order, in a new audience transaction that it
// returns (nil when no item concerns an audience). It reads and writes each
// profile's state once, and reads the traits the audiences name once per
// profile: in one call each when the backends implement audience.BatchTx and
// profile.BatchTx.
func (c *Controller) batchAudiences(ctx context.Context, ptx profile.Tx, set *audience.Set, items []batchItem, updates []profile.BatchUpdate) (audience.Tx, error) {
	if set.Len() == 0 {
		return nil, nil
	}
	var pids, pick []identity.ProfileID // pick: profiles no identify of the batch changed
	seen := map[identity.ProfileID]bool{}
	for i := range items {
		if it := &items[i]; concernsAudiences(set, it) && !seen[it.profile] {
			seen[it.profile] = true
			pids = append(pids, it.profile)
			if it.traits == nil {
				pick = append(pick, it.profile)
			}
		}
	}
	if len(pids) == 0 {
		return nil, nil
	}
	names := set.TraitNames()
	values, err := pickTraitsBatch(ctx, ptx, pick, names)
	if err != nil {
		return nil, backendError("profile read", err)
	}
	atx, err := c.audiences.Begin(ctx)
	if err != nil {
		return nil, backendError("audience begin", err)
	}
	states, err := stateBatch(ctx, atx, pids)
	if err != nil {
		atx.Rollback(ctx)
		return nil, backendError("reading audience state", err)
	}
	for i := range items {
		it := &items[i]
		if !concernsAudiences(set, it) {
			continue
		}
		st := states[it.profile]
		if st == nil {
			st = &audience.State{}
			states[it.profile] = st
		}
		if ev := updates[it.update].Event; ev != nil {
			set.Observe(st, ev, it.now)
		}
		// The profiles of a batch were admitted: none is suppressed. The
		// consent is the profile's after this message.
		in := audience.Inputs{Traits: it.traits, Consent: updates[it.update].Metadata.Consent}
		if it.traits == nil {
			in.Values = values[it.profile]
			if in.Values == nil { // stored afresh in this batch: no traits yet
				in.Values = make([]any, len(names))
			}
		}
		if len(it.msg.joined) > 0 {
			it.reckon = &reckoning{base: slices.Clone(st.Audiences)}
		}
		it.changes = set.EvaluateInputs(st, in, it.now, false)
	}
	puts := make([]audience.BatchState, len(pids))
	for i, pid := range pids {
		puts[i] = audience.BatchState{Profile: pid, State: states[pid]}
	}
	if err := putBatch(ctx, atx, puts); err != nil {
		atx.Rollback(ctx)
		return nil, backendError("audience put", err)
	}
	return atx, nil
}

// concernsAudiences reports whether a stored item can change its profile's
// memberships (an identify: new traits; an event some audience counts;
// consent some audience reads) or must read them (a destination it makes a
// recipient is owed them).
func concernsAudiences(set *audience.Set, it *batchItem) bool {
	return it.outcome == outcomeStored && (it.msg.kind == kindIdentify || it.msg.kind == kindTrack && set.UsesEvents(it.msg.event) ||
		it.msg.hasConsent && set.UsesConsent() || len(it.msg.joined) > 0)
}
