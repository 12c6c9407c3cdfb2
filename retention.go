package privacy

// Retention: storage limitation (Art. 5(1)(e)). A policy says how long
// events are kept after they were collected, globally and per source, and
// how long a profile is kept without activity; ApplyRetention deletes what
// is older, profile by profile under the people's locks, as every writer
// does, and erases inactive profiles by DELETE_INTERNAL requests of their
// own. Each run is journaled (type
// RETENTION, its cutoffs kept until it ends, so Recover finishes a run a
// crash cut short with the same cutoffs) and audited (received, finished,
// with counts and never a person). Run applies the policy on its schedule.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/txscope"
)

// RetentionPolicy is how long the Controller keeps the events it collects,
// counted from when it collected them (an event's ReceivedAt): a sender's
// clock, or an import of old events, does not make an event expire on
// arrival. Traits, identifiers and consent stay with the profile until the
// person is erased. The zero policy keeps everything.
type RetentionPolicy struct {
	// Events is how long an event is kept; 0 keeps events (but those of
	// the Sources listed).
	Events time.Duration
	// Sources sets, per source id (a message's Source: in segmentapi, the
	// write key's source), how long that source's events are kept, in
	// place of Events; 0 keeps them.
	Sources map[string]time.Duration
	// InactiveProfiles is how long a profile is kept without activity (no
	// message collected, no change made: its metadata's UpdatedAt); then
	// it is erased as by a DELETE_INTERNAL request, which the run makes and
	// the journal and audit log keep: the person's identifiers, traits,
	// events, audience memberships and data key go; destinations are not
	// told, and the person is not suppressed (should they come back, they
	// are collected afresh). 0 keeps profiles. Account profiles (groups)
	// are not people, and are kept.
	InactiveProfiles time.Duration
}

// MinRetention is the shortest period a RetentionPolicy takes: a shorter
// one is most likely a unit mistake (time.Duration(30) is 30 nanoseconds).
const MinRetention = time.Minute

// MaxRetentionSources bounds RetentionPolicy.Sources.
const MaxRetentionSources = 1000

// maxRetentionSourceLen bounds a source id in a policy, in bytes: each run
// journals every source's cutoff, so the bound keeps a run's entry under
// a few hundred KB.
const maxRetentionSourceLen = 200

// DefaultRetentionPeriod is how often Run applies the policy unless
// Schedule.Retention says otherwise.
const DefaultRetentionPeriod = time.Hour

// WithRetention sets the retention policy that ApplyRetention, and Run on
// its schedule, apply. A period under MinRetention, a negative one, a
// source id that is empty, not valid UTF-8 or over 200 bytes, or more than
// MaxRetentionSources sources are refused.
func WithRetention(p RetentionPolicy) Option {
	p.Sources = maps.Clone(p.Sources) // the policy as given, whatever the caller's map becomes
	return func(c *config) error {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("WithRetention: %w", err)
		}
		// A copy for each Controller, p left as it is: the Option may
		// serve several New calls at once.
		kept := p
		kept.Sources = maps.Clone(p.Sources)
		c.retention = kept
		return nil
	}
}

// Validate reports what WithRetention would refuse in p, naming it.
func (p RetentionPolicy) Validate() error {
	period := func(what string, d time.Duration) error {
		if d != 0 && d < MinRetention {
			return fmt.Errorf("%s: %v is under the minimum of %v (a negative period, or a unit mistake?)", what, d, MinRetention)
		}
		return nil
	}
	if err := period("policy Events", p.Events); err != nil {
		return err
	}
	if err := period("policy InactiveProfiles", p.InactiveProfiles); err != nil {
		return err
	}
	if len(p.Sources) > MaxRetentionSources {
		return fmt.Errorf("policy Sources: %d sources, more than %d", len(p.Sources), MaxRetentionSources)
	}
	for src, d := range p.Sources {
		if src == "" || len(src) > maxRetentionSourceLen || !storableText(src) {
			return fmt.Errorf("policy Sources: a source id is empty, over %d bytes, not valid UTF-8 or holds a NUL byte", maxRetentionSourceLen)
		}
		if err := period("policy Sources["+src+"]", d); err != nil {
			return err
		}
	}
	return nil
}

// cutoffs are the policy's times at now: events collected before them go.
func (p RetentionPolicy) cutoffs(now time.Time) profile.Cutoffs {
	c := profile.Cutoffs{}
	if p.Events != 0 {
		c.Before = now.Add(-p.Events)
	}
	if len(p.Sources) > 0 {
		c.Sources = make(map[string]time.Time, len(p.Sources))
		for src, d := range p.Sources {
			c.Sources[src] = time.Time{}
			if d != 0 {
				c.Sources[src] = now.Add(-d)
			}
		}
	}
	return c
}

// describe is the policy as the audit log keeps it: periods and source ids,
// which are the host's configuration, never a person's.
func (p RetentionPolicy) describe() string {
	var b strings.Builder
	if p.Events != 0 {
		fmt.Fprintf(&b, "events kept %v", p.Events)
	} else {
		b.WriteString("events kept")
	}
	for _, src := range slices.Sorted(maps.Keys(p.Sources)) {
		if d := p.Sources[src]; d != 0 {
			fmt.Fprintf(&b, "; source %q kept %v", src, d)
		} else {
			fmt.Fprintf(&b, "; source %q kept", src)
		}
	}
	if p.InactiveProfiles != 0 {
		fmt.Fprintf(&b, "; inactive profiles kept %v", p.InactiveProfiles)
	}
	return b.String()
}

// RetentionOptions tunes one ApplyRetention call.
type RetentionOptions struct {
	// DryRun counts what the policy would delete, and changes and journals
	// nothing.
	DryRun bool
	// Progress, when set, is called after each page of profiles with the
	// report so far (from the calling goroutine).
	Progress func(RetentionReport)

	// recentSince, set by Run's rounds, makes the run stand down for a run
	// with a smaller id received since, finished or not: hosts on one
	// schedule share its rounds.
	recentSince time.Time
}

// RetentionReport is what a retention run did, or in a dry run would do.
type RetentionReport struct {
	// ID is the run's request id in the journal and the audit log; empty
	// for a dry run, or when the policy keeps everything.
	ID     string
	DryRun bool
	// Status is FINISHED, or RUNNING when the run stopped on an error:
	// Recover (Run does) finishes it with the same cutoffs.
	Status Status
	// Cutoffs are the times the policy cut events at; InactiveBefore, when
	// not zero, the time before which a profile's last write makes it
	// inactive.
	Cutoffs        profile.Cutoffs
	InactiveBefore time.Time
	// Profiles is how many profiles the run went through, Pruned how many
	// of them had events deleted, Events how many events were deleted,
	// Erased how many inactive profiles were erased (each by a
	// DELETE_INTERNAL request of its own), in a dry run how many would be.
	// A run resumed by Recover counts what it did after the restart.
	Profiles, Pruned, Events, Erased int
	// Messages is how many queued or dead messages of expired events were
	// dropped from the outbox (outbox.ExpiringTx; none when the outbox
	// cannot), in a dry run how many would be: an event deleted here must
	// not reach a destination later, from a retry or a replayed dead letter.
	Messages int
	// StoodDownFor, when set, is the unfinished run with a smaller id this
	// one found before its first page, or between two: it stopped there and
	// ended FINISHED, leaving the rest to that run.
	StoodDownFor      string
	Started, Finished time.Time

	recentSince time.Time // RetentionOptions.recentSince
}

// ErrRetentionNotSupported: the profile store's transactions cannot delete
// events in place (they are no profile.EventPruner).
var ErrRetentionNotSupported = errors.New("privacy: the profile store cannot delete old events (its transactions are no profile.EventPruner)")

// retentionPage is how many profiles one transaction prunes, under their
// locks: large enough to amortise a transaction, small enough that the
// people it holds wait a few milliseconds.
const retentionPage = 100

// ApplyRetention deletes the events the retention policy (WithRetention)
// says are too old, profile by profile under the people's locks, erases
// the profiles inactive for longer than it allows (each by a
// DELETE_INTERNAL request of its own, decided only if the profile is still
// inactive under the person's locks), and returns what it did. A run is journaled as a request of type RETENTION
// and audited (its policy when received, its counts when finished); one
// that stops on an error stays RUNNING and Recover finishes it with the
// same cutoffs (deleting is idempotent). Audiences that count events are
// recounted for the profiles that lost some, and destinations told of
// what changed. A dry run counts and changes nothing. A policy that keeps
// everything does nothing and journals nothing.
func (c *Controller) ApplyRetention(ctx context.Context, opts RetentionOptions) (*RetentionReport, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	ctx, span := c.tel.tracer.Start(ctx, spanName(Retention), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(AttrRequestType.String(string(Retention))))
	start := time.Now()
	rep, err := c.applyRetention(ctx, opts)
	status := "ERROR"
	args := []any{slog.Bool("dry_run", opts.DryRun), slog.Duration("duration", time.Since(start))}
	if rep != nil {
		status = string(rep.Status)
		span.SetAttributes(AttrRequestID.String(rep.ID))
		args = append(args, slog.String("request_id", rep.ID), slog.Int("profiles", rep.Profiles), slog.Int("events_deleted", rep.Events), slog.Int("messages_dropped", rep.Messages))
	}
	span.SetAttributes(AttrRequestStatus.String(status))
	args = append(args, slog.String("status", status))
	if err != nil {
		span.SetAttributes(AttrErrorType.String(ErrorKind(err)))
		span.SetStatus(codes.Error, ErrorKind(err))
		args = append(args, slog.String("error", ErrorKind(err)))
	}
	span.End()
	c.log.InfoContext(ctx, "privacy retention", args...)
	return rep, err
}

func (c *Controller) applyRetention(ctx context.Context, opts RetentionOptions) (*RetentionReport, error) {
	now := c.now()
	rep := &RetentionReport{DryRun: opts.DryRun, Cutoffs: c.retention.cutoffs(now), Started: now, Status: Running, recentSince: opts.recentSince}
	if c.retention.InactiveProfiles != 0 {
		rep.InactiveBefore = now.Add(-c.retention.InactiveProfiles)
	}
	if rep.nothing() {
		rep.Status, rep.Finished = Finished, now
		return rep, nil
	}
	if !rep.Cutoffs.Zero() {
		// Before anything is journaled: a run that cannot prune would stay
		// RUNNING for ever, Recover failing on it at every round.
		if err := c.checkPruner(ctx); err != nil {
			rep.Status = Failed
			return rep, err
		}
	}
	if opts.DryRun {
		if _, err := c.prune(ctx, nil, nil, rep, true, opts.Progress); err != nil {
			return rep, err
		}
		rep.Status, rep.Finished = Finished, c.now()
		return rep, nil
	}
	e := &journal.Entry{ID: newRequestID(now), Type: Retention, Status: Running, Received: now, Due: now.AddDate(0, 1, 0),
		Traits: encodeCutoffs(rep.Cutoffs, rep.InactiveBefore)}
	rep.ID = e.ID
	cl := c.claimNew(e)
	c.oweAs(e, "received", Running, c.retention.describe())
	if err := c.record(ctx, cl, e); err != nil {
		// Nothing was deleted. FAILED when nothing was recorded, or the
		// failure was; RUNNING when the intent may have landed and its end
		// could not be recorded: Recover may yet run it.
		r, err := c.intentFailed(ctx, cl, e, err)
		rep.Status = Failed
		if r != nil {
			rep.Status = r.Status
		}
		return rep, err
	}
	c.settleSoon(ctx, e)
	return rep, c.finishRetention(ctx, cl, e, rep, opts.Progress)
}

// checkPruner fails with ErrRetentionNotSupported when the profile store's
// transactions cannot prune events.
func (c *Controller) checkPruner(ctx context.Context) error {
	tx, err := c.profiles.Begin(ctx)
	if err != nil {
		return backendError("profile begin", err)
	}
	defer tx.Rollback(ctx)
	if _, ok := tx.(profile.EventPruner); !ok {
		return ErrRetentionNotSupported
	}
	return nil
}

// finishRetention prunes with the run's cutoffs and ends it FINISHED; on an
// error it leaves the run RUNNING, for Recover. A run that finds another
// unfinished one with a smaller id stands down (it ends FINISHED, saying
// so): of hosts that start runs together, one goes on.
func (c *Controller) finishRetention(ctx context.Context, cl *claim, e *journal.Entry, rep *RetentionReport, progress func(RetentionReport)) error {
	defer c.inflight.Delete(e.ID)
	other, err := c.prune(ctx, cl, e, rep, false, progress)
	if err != nil {
		return fmt.Errorf("privacy: retention run %s stopped; Recover finishes it: %w", e.ID, err)
	}
	f := e.Clone()
	f.Status, f.Finished = Finished, c.now()
	f.Scrub()
	detail := fmt.Sprintf("%d events deleted of %d profiles, %d queued or dead messages of them dropped, %d inactive profiles erased, %d profiles gone through",
		rep.Events, rep.Pruned, rep.Messages, rep.Erased, rep.Profiles)
	if other != "" {
		detail = "stood down for the retention run " + other + " under way; " + detail
		rep.StoodDownFor = other
	}
	if err := c.endWith(ctx, cl, e, f, "finished", detail); err != nil {
		return fmt.Errorf("privacy: retention run %s did its work; its end could not be recorded, Recover records it: %w", e.ID, err)
	}
	rep.Status, rep.Finished = Finished, f.Finished
	return nil
}

// resumeRetention finishes, for Recover, a run a crash or an error cut
// short, with the cutoffs it journaled, from the page it was on.
func (c *Controller) resumeRetention(ctx context.Context, cl *claim, e *journal.Entry) error {
	cut, inactive, err := decodeCutoffs(e.Traits)
	if err != nil {
		c.inflight.Delete(e.ID)
		return fmt.Errorf("privacy: retention run %s: its journaled cutoffs: %w", e.ID, err)
	}
	rep := &RetentionReport{ID: e.ID, Cutoffs: cut, InactiveBefore: inactive, Started: c.now(), Status: Running}
	return c.finishRetention(ctx, cl, e, rep, nil)
}

// The run's progress, journaled in its Traits before each page: every
// profile up to doneThrough was pruned and recounted; those after it, up
// to pageThrough, may have been pruned without their audiences recounted
// (the run stopped between the two), so a resumed run recounts them all.
const (
	doneThrough = "done_through"
	pageThrough = "page_through"
)

// prune goes through every profile, a page at a time, deleting (dry: only
// counting) the events the cutoffs say have expired and erasing the
// inactive profiles. A journaled run (e) records its progress before each
// page (a write that fails if another instance took the run over), so
// that a resumed one starts from the page it was on; and it checks that
// no run with a smaller id is unfinished: it returns that run's id, and
// stops, if one is.
func (c *Controller) prune(ctx context.Context, cl *claim, e *journal.Entry, rep *RetentionReport, dry bool, progress func(RetentionReport)) (string, error) {
	after, recountThrough := identity.ProfileID(""), identity.ProfileID("")
	if e != nil {
		if v, ok := e.Traits[doneThrough].(string); ok {
			after = identity.ProfileID(v)
		}
		if v, ok := e.Traits[pageThrough].(string); ok {
			recountThrough = identity.ProfileID(v)
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		pids, err := c.profiles.IDs(ctx, after, retentionPage)
		if err != nil {
			return "", backendError("listing profiles", err)
		}
		if len(pids) == 0 {
			return "", nil
		}
		if e != nil {
			if other, err := c.otherRetention(ctx, e.ID, rep.recentSince); other != "" || err != nil {
				return other, err
			}
			e.Traits[doneThrough], e.Traits[pageThrough] = string(after), string(pids[len(pids)-1])
			if err := c.record(ctx, cl, e); err != nil {
				return "", err
			}
		}
		after = pids[len(pids)-1]
		if !rep.Cutoffs.Zero() {
			pruned, n, err := c.prunePage(ctx, pids, rep.Cutoffs, dry)
			if err != nil {
				return "", err
			}
			rep.Pruned += len(pruned)
			rep.Events += n.events
			rep.Messages += n.messages
			if !dry {
				if recountThrough != "" && pids[0] <= recountThrough {
					// Resumed: what the stopped run pruned of these may
					// not have been recounted.
					pruned = slices.DeleteFunc(slices.Clone(pids), func(pid identity.ProfileID) bool { return pid > recountThrough })
				}
				if err := c.recountPruned(ctx, pruned); err != nil {
					return "", err
				}
			}
		}
		if !rep.InactiveBefore.IsZero() {
			if err := c.eraseInactive(ctx, pids, rep, dry); err != nil {
				return "", err
			}
		}
		rep.Profiles += len(pids)
		if progress != nil {
			progress(*rep)
		}
	}
}

// otherRetention returns the id of a retention run other than id, with a
// smaller id (started before it), that is unfinished or, with since set,
// was received since, if there is one.
func (c *Controller) otherRetention(ctx context.Context, id string, since time.Time) (string, error) {
	// Checked before every page: two short listings, never the whole
	// history of runs. The unfinished ones, by status; those received
	// since, among the newest (a period holds a run or two).
	filters := []journal.Filter{{Types: []RequestType{Retention}, Statuses: []Status{Initialized, Running}, Limit: 100}}
	if !since.IsZero() {
		filters = append(filters, journal.Filter{Types: []RequestType{Retention}, Limit: 10})
	}
	for _, f := range filters {
		page, err := c.journal.List(ctx, f)
		if err != nil {
			return "", backendError("journal", err)
		}
		for _, o := range page.Entries {
			if o.ID < id && (!o.Status.Ended() || !since.IsZero() && !o.Received.Before(since)) {
				return o.ID, nil
			}
		}
	}
	return "", nil
}

// pageCounts are what pruning a page deleted: events from the profile
// store, messages from the outbox.
type pageCounts struct{ events, messages int }

// prunePage prunes the pages' profiles in one operation, under their
// locks in this process and across processes: a collection, merge or
// erasure of one of them happens wholly before or wholly after. It deletes
// their expired events and the outbox's queued and dead messages of
// expired events, and returns the profiles that lost events and what it
// deleted.
func (c *Controller) prunePage(ctx context.Context, pids []identity.ProfileID, cut profile.Cutoffs, dry bool) ([]identity.ProfileID, pageCounts, error) {
	// An attempt whose profile commit failed after the outbox's may have
	// dropped the page's messages for good (an outbox of its own) or not
	// (one transaction with the store, rolled back whole): the next
	// attempt finds none, or the same again. The larger count is right.
	dropped := 0
	for attempt := 1; ; attempt++ {
		pruned, n, err := c.prunePageOnce(ctx, pids, cut, dry)
		n.messages = max(n.messages, dropped)
		if !errors.Is(err, txscope.ErrRetry) || attempt == retryAttempts || ctx.Err() != nil {
			return pruned, n, err
		}
		dropped = n.messages
		pause(ctx, attempt)
	}
}

func (c *Controller) prunePageOnce(ctx context.Context, pids []identity.ProfileID, cut profile.Cutoffs, dry bool) ([]identity.ProfileID, pageCounts, error) {
	var n pageCounts
	ctx, closeScope := c.openScope(ctx)
	defer closeScope()
	var held lockSet
	for _, pid := range pids {
		held.add(c.locks.profile(pid))
	}
	c.locks.lock(&held)
	defer c.locks.unlock(&held)
	if err := c.lockRemote(ctx, nil, pids); err != nil {
		return nil, n, err
	}
	tx, err := c.profiles.Begin(ctx)
	if err != nil {
		return nil, n, backendError("profile begin", err)
	}
	defer tx.Rollback(ctx)
	pr, ok := tx.(profile.EventPruner)
	if !ok {
		return nil, n, ErrRetentionNotSupported
	}
	counts, err := pr.PruneEvents(ctx, pids, cut)
	if err != nil {
		return nil, n, backendError("pruning events", err)
	}
	if len(counts) != len(pids) {
		return nil, n, backendError("pruning events", fmt.Errorf("the store counted %d profiles of %d", len(counts), len(pids)))
	}
	var pruned []identity.ProfileID
	for i, k := range counts {
		if k > 0 {
			pruned = append(pruned, pids[i])
			n.events += k
		}
	}
	// The outbox's copies of the expired events, whether or not the store
	// held any still: a run resumed after a crash between the two commits
	// finds the events gone and the messages there. By the cutoffs, not by
	// the events pruned, for the same reason.
	otx, err := c.outbox.Begin(ctx)
	if err != nil {
		return nil, n, backendError("outbox begin", err)
	}
	defer otx.Rollback(ctx)
	if ex, ok := otx.(outbox.ExpiringTx); ok {
		// Leases are the deliverer's, on the wall clock (not WithClock's).
		if n.messages, err = ex.Expire(ctx, pids, cut, time.Now()); err != nil {
			return nil, n, backendError("expiring queued messages", err)
		}
	}
	if dry || n.events == 0 && n.messages == 0 {
		return pruned, n, nil // rolled back
	}
	// The outbox first: a conflict to retry at either commit runs the page
	// again from the start, which must find the events still there (else
	// it prunes none and recounts nobody). The outbox only drops copies of
	// expired events, so its commit landing alone harms nothing.
	if err := otx.Commit(ctx); err != nil {
		return nil, pageCounts{}, backendError("outbox commit", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, pageCounts{messages: n.messages}, backendError("profile commit", err) // see prunePage

	}
	return pruned, n, nil
}

// recountPruned recounts, from the events left, the audience counters of
// the profiles that lost events, when some audience counts events: a
// membership must not rest on events no longer held. A failure stops the
// run, whose resumption recounts the page (prune's page bounds).
func (c *Controller) recountPruned(ctx context.Context, pids []identity.ProfileID) error {
	if len(pids) == 0 || len(c.set.Load().EventNames()) == 0 {
		return nil
	}
	for _, pid := range pids {
		if err := c.reevaluate(ctx, pid, recountEvents); err != nil {
			return err
		}
	}
	return nil
}

// nothing reports whether the run's policy keeps everything.
func (r *RetentionReport) nothing() bool { return r.Cutoffs.Zero() && r.InactiveBefore.IsZero() }

// eraseInactive erases, each by a DELETE_INTERNAL request of its own, the
// profiles of the page whose last write came before rep.InactiveBefore (a
// dry run counts them). The metadata read here, outside any lock, only
// finds candidates: the erasure checks again under the person's locks
// (journal.Entry.InactiveBefore), so someone who came back meanwhile is
// kept.
func (c *Controller) eraseInactive(ctx context.Context, pids []identity.ProfileID, rep *RetentionReport, dry bool) error {
	for _, pid := range pids {
		if pid.IsAccount() {
			continue
		}
		md, err := c.profiles.Metadata(ctx, pid)
		if errors.Is(err, profile.ErrNotFound) {
			continue
		}
		if err != nil {
			return backendError("reading metadata", err)
		}
		if !md.UpdatedAt.Before(rep.InactiveBefore) {
			continue
		}
		if dry {
			rep.Erased++
			continue
		}
		n, err := c.graph.Node(ctx, pid)
		if errors.Is(err, identity.ErrNotFound) {
			continue
		}
		if err != nil {
			return backendError("reading identifiers", err)
		}
		var subjects []identity.ID
		for _, l := range n.Links {
			if len(subjects) < MaxSubjects {
				subjects = append(subjects, l.ID)
			}
		}
		if len(subjects) == 0 {
			continue // reached by no identifier: no request can name it
		}
		r, err := c.Apply(ctx, Request{Type: DeleteInternal, Subjects: subjects, inactiveBefore: rep.InactiveBefore})
		if err != nil {
			return err
		}
		if r.Status != Finished {
			return fmt.Errorf("privacy: the erasure %s of an inactive profile ended %s", r.ID, r.Status)
		}
		if _, err := c.profiles.Metadata(ctx, pid); errors.Is(err, profile.ErrNotFound) {
			rep.Erased++ // not kept as active again
		}
	}
	return nil
}

// encodeCutoffs is how a run's cutoffs are journaled (in Traits: JSON
// through every journal backend), as RFC 3339 text.
func encodeCutoffs(c profile.Cutoffs, inactive time.Time) map[string]any {
	m := map[string]any{}
	if !c.Before.IsZero() {
		m["before"] = c.Before.UTC().Format(time.RFC3339Nano)
	}
	if !inactive.IsZero() {
		m["inactive_before"] = inactive.UTC().Format(time.RFC3339Nano)
	}
	if len(c.Sources) > 0 {
		src := make(map[string]any, len(c.Sources))
		for s, t := range c.Sources {
			src[s] = ""
			if !t.IsZero() {
				src[s] = t.UTC().Format(time.RFC3339Nano)
			}
		}
		m["sources"] = src
	}
	return m
}

func decodeCutoffs(m map[string]any) (profile.Cutoffs, time.Time, error) {
	var c profile.Cutoffs
	var inactive time.Time
	parse := func(v any) (time.Time, error) {
		s, ok := v.(string)
		if !ok {
			return time.Time{}, fmt.Errorf("a cutoff of type %T", v)
		}
		if s == "" {
			return time.Time{}, nil
		}
		return time.Parse(time.RFC3339Nano, s)
	}
	for key, to := range map[string]*time.Time{"before": &c.Before, "inactive_before": &inactive} {
		if v, ok := m[key]; ok {
			t, err := parse(v)
			if err != nil {
				return c, inactive, err
			}
			*to = t
		}
	}
	if v, ok := m["sources"]; ok {
		src, ok := v.(map[string]any)
		if !ok {
			return c, inactive, fmt.Errorf("sources of type %T", v)
		}
		c.Sources = make(map[string]time.Time, len(src))
		for s, v := range src {
			t, err := parse(v)
			if err != nil {
				return c, inactive, err
			}
			c.Sources[s] = t
		}
	}
	if c.Zero() && inactive.IsZero() {
		return c, inactive, errors.New("no cutoff")
	}
	return c, inactive, nil
}
