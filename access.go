package privacy

// The rights of access and to data portability (Art. 15, 20): ACCESS, as one
// export.Package (Access) or streamed in a format (Export).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
)

// exportPage is how many events an export reads from the store at a time: the
// memory an export holds does not grow with the person's events.
const exportPage = profile.MaxLimit

// Access returns everything held about the person known by id (Art. 15 and
// 20): identifiers, traits, every event, audiences, suppression, past
// requests, recipients, consent with its history, and the accounts (groups)
// they are linked to, as one export.Package. It is an ACCESS request with a receipt
// (read it with Status(ctx, pkg.RequestID)). An unknown or erased person fails
// with ErrNotFound, and the request is recorded as FINISHED with nothing held.
// Access holds the whole package in memory; Export streams it instead.
func (c *Controller) Access(ctx context.Context, id identity.ID) (*export.Package, error) {
	pkg := &export.Package{}
	if _, err := c.runAccess(ctx, id, &packageSink{p: pkg}); err != nil {
		return nil, err
	}
	return pkg, nil
}

// Export writes everything held about the person known by id to w in the
// format (Art. 15 and 20), as Access gathers it, page by page: memory does not
// grow with the number of events. It is an ACCESS request; the receipt says
// FINISHED once the export is complete. The person's subjects stay locked while
// it writes, so the export is a consistent snapshot that no concurrent
// collection or right can tear; a slow w delays collection about that person
// only. A failing w (or a cancelled ctx) ends the export with the error, and the
// receipt says FAILED; nothing else changes. An unknown format fails with
// ErrInvalid before anything is written or journaled, and an unknown or
// erased person with ErrNotFound before the first byte is written: a host
// streaming to an http.ResponseWriter can still answer with an error (as
// segmentapi's ACCESS download does).
func (c *Controller) Export(ctx context.Context, id identity.ID, w io.Writer, f export.Format) (*Receipt, error) {
	ew, err := export.NewWriter(w, f)
	if err != nil {
		return nil, fmt.Errorf("privacy: %w: %w", ErrInvalid, err)
	}
	return c.runAccess(ctx, id, ew)
}

// exportSink receives an export section by section: an *export.Writer, or a
// packageSink that builds the Package.
type exportSink interface {
	WriteHeader(export.Header) error
	WriteIdentifier(profile.ExternalID) error
	WriteTrait(string, profile.Trait) error
	WriteEvent(profile.Event) error
	WriteAudience(string) error
	WriteRequest(export.Request) error
	WriteRecipient(export.Recipient) error
	WriteConsentChange(profile.ConsentChange) error
	WriteAccount(profile.AccountLink) error
	Close() error
}

// runAccess journals an ACCESS request, writes the person's data to sink under
// their lock and records how it ended.
func (c *Controller) runAccess(ctx context.Context, id identity.ID, sink exportSink) (*Receipt, error) {
	return c.right(ctx, Access, func(ctx context.Context) (*Receipt, error) { return c.access(ctx, id, sink) })
}

// access is runAccess, its telemetry aside.
func (c *Controller) access(ctx context.Context, id identity.ID, sink exportSink) (*Receipt, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	// Access writes no backend but the journal: its key is checked here,
	// not by a suppression transaction (a host left running through a
	// rotation would list the person's requests under the old keys only).
	if err := c.checkKeyNow(ctx); err != nil {
		return nil, err
	}
	now := c.now()
	e := &journal.Entry{ID: newRequestID(now), Type: Access, Status: Initialized, Received: now, Due: now.AddDate(0, 1, 0)}
	n, err := id.Normalize()
	if err != nil {
		err = fieldError("ID", err)
		e.Status, e.Reason, e.Finished = Invalid, c.redact(e, describe(err), []identity.ID{id}), now
		return c.refuse(ctx, e, err)
	}
	e.Subjects, e.SubjectHashes = []identity.ID{n}, []identity.Hash{c.hasher.ID(n)}
	e.Status = Running
	cl := c.claimNew(e) // Recover leaves it alone while it runs
	defer c.inflight.Delete(e.ID)
	c.owe(e, "received")
	if err := c.record(ctx, cl, e); err != nil {
		return c.intentFailed(ctx, cl, e, err)
	}
	c.settleSoon(ctx, e)

	for attempt := 1; ; attempt++ {
		r, err := c.accessOnce(ctx, cl, e, sink)
		if !errors.Is(err, errRestart) {
			return r, err
		}
		if attempt == retryAttempts {
			return c.endAccess(ctx, cl, e, err)
		}
		pause(ctx, attempt) // nothing was written yet
	}
}

// accessOnce is one attempt at runAccess, in a scope of its own. It fails with
// errRestart, having written nothing, when the person moved while it locked them.
func (c *Controller) accessOnce(ctx context.Context, cl *claim, e *journal.Entry, sink exportSink) (*Receipt, error) {
	outer := ctx
	ctx, closeScope := c.openScope(ctx)
	// The end is recorded outside the scope: on a backend whose scope holds
	// a lock-only transaction (SQLite), what is written in it is rolled
	// back when it closes, and the ACCESS would stay RUNNING.
	leave := sync.OnceFunc(closeScope)
	defer leave()
	matches, held, err := c.lockMatches(ctx, e.Subjects, nil)
	if errors.Is(err, errRestart) {
		return nil, err
	}
	if err != nil {
		leave()
		return c.endAccess(outer, cl, e, err)
	}
	unlock := sync.OnceFunc(func() { c.locks.unlock(&held) })
	defer unlock()
	pid := matches[0].Profile
	if pid == "" {
		leave()
		e.Reason = "nobody is known by the subject: nothing is held"
		c.finish(outer, cl, e)
		return receiptOf(e), fmt.Errorf("privacy: %w: nobody is known by the subject", ErrNotFound)
	}
	err = c.writeExport(ctx, e, pid, sink)
	leave()
	unlock()
	if err != nil {
		var se *safeError
		if !errors.As(err, &se) {
			// The writer's error (the host's io.Writer, or the export's own
			// checks): told by its kind, as a backend's is.
			err = &safeError{text: "privacy: writing the export: " + describe(err), errs: []error{err}}
		}
		return c.endAccess(outer, cl, e, err)
	}
	return c.endAccess(outer, cl, e, nil)
}

// endAccess records how an ACCESS request ended, as every request ends: FINISHED,
// or through fail (FAILED, or INVALID for bad input).
func (c *Controller) endAccess(ctx context.Context, cl *claim, e *journal.Entry, err error) (*Receipt, error) {
	if err != nil {
		return c.fail(ctx, cl, e, err)
	}
	c.finish(ctx, cl, e)
	return receiptOf(e), nil
}

// writeExport reads everything held about pid and writes it to sink, in the
// sink's section order. The caller holds the person's lock.
func (c *Controller) writeExport(ctx context.Context, e *journal.Entry, pid identity.ProfileID, sink exportSink) error {
	node, err := c.graph.Node(ctx, pid)
	if err != nil {
		return backendError("identity read", err)
	}
	p, err := c.profiles.Get(ctx, pid)
	if errors.Is(err, profile.ErrNotFound) {
		// Linked, but the profile's commit was lost: identifiers and nothing else.
		p, err = &profile.Profile{ID: pid, Metadata: profile.Metadata{CreatedAt: node.CreatedAt}}, nil
	}
	if err != nil {
		return backendError("profile read", err)
	}
	suppressed, err := c.suppressions.ProfileSuppressed(ctx, pid)
	if err != nil {
		return backendError("suppression read", err)
	}
	meta := p.Metadata
	recipients, consentHistory, accounts := meta.Recipients, meta.Consent.History(), meta.Accounts
	meta.Recipients, meta.Consent, meta.Accounts = nil, meta.Consent.WithoutHistory(), nil // sections of their own
	if err := sink.WriteHeader(export.Header{Schema: export.SchemaVersion, GeneratedAt: c.now(), RequestID: e.ID,
		ProfileID: pid, Metadata: meta, Suppression: export.Suppression{Suppressed: suppressed}}); err != nil {
		return err
	}
	hashes := make([]identity.Hash, 0, len(node.Links)*len(c.hashers))
	for _, l := range node.Links {
		hashes = append(hashes, c.hashesOf(l.ID)...) // requests made before a rotation too
		if err := sink.WriteIdentifier(profile.ExternalID{ID: l.ID, CreatedAt: l.LinkedAt, FirstMessageID: l.MessageID}); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(p.Traits))
	for k := range p.Traits {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := sink.WriteTrait(k, p.Traits[k]); err != nil {
			return err
		}
	}
	for q := (profile.EventQuery{Limit: exportPage, Sort: profile.Asc}); ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, err := c.profiles.Events(ctx, pid, q)
		if errors.Is(err, profile.ErrNotFound) {
			break
		}
		if err != nil {
			return backendError("profile events", err)
		}
		for _, ev := range page.Events {
			if err := sink.WriteEvent(ev); err != nil {
				return err
			}
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	if st, err := c.audiences.State(ctx, pid); err == nil {
		for _, key := range st.Audiences {
			if err := sink.WriteAudience(key); err != nil {
				return err
			}
		}
	}
	if err := c.writeRequests(ctx, e, hashes, sink); err != nil {
		return err
	}
	for _, r := range recipients {
		if err := sink.WriteRecipient(r); err != nil {
			return err
		}
	}
	for _, ch := range consentHistory {
		if err := sink.WriteConsentChange(ch); err != nil {
			return err
		}
	}
	for _, l := range accounts {
		if err := sink.WriteAccount(l); err != nil {
			return err
		}
	}
	return sink.Close()
}

// writeRequests writes the person's past requests, oldest first: those naming
// any identifier now linked to them.
func (c *Controller) writeRequests(ctx context.Context, e *journal.Entry, hashes []identity.Hash, sink exportSink) error {
	var found []*journal.Entry
	seen := map[string]bool{e.ID: true}
	// A filter names at most maxSubjectsPerList hashes (a person may have
	// a thousand identifiers): one listing per part, a request naming
	// identifiers of several parts kept once.
	for rest := hashes; len(rest) > 0; {
		n := min(len(rest), maxSubjectsPerList)
		f := journal.Filter{Subjects: rest[:n], Limit: 1000}
		rest = rest[n:]
		for {
			page, err := c.journal.List(ctx, f)
			if err != nil {
				return backendError("journal", err)
			}
			for _, r := range page.Entries {
				if !seen[r.ID] {
					seen[r.ID] = true
					found = append(found, r)
				}
			}
			if page.Next == "" {
				break
			}
			f.Cursor = page.Next
		}
	}
	// Oldest first, as the journal orders them (it lists newest first).
	slices.SortStableFunc(found, func(a, b *journal.Entry) int {
		return cmp.Or(a.Received.Compare(b.Received), cmp.Compare(a.ID, b.ID))
	})
	for _, r := range found {
		q := export.Request{ID: r.ID, Type: string(r.Type), Status: string(r.Status), Reason: r.Reason, Received: r.Received,
			Due: r.Due, Finished: r.Finished, ExtensionReason: r.ExtensionReason, ProfileVersion: r.ProfileVersion}
		for _, o := range r.Backends {
			q.Outcomes = append(q.Outcomes, export.Outcome{Kind: export.OutcomeBackend, Name: o.Name, Status: string(o.Status), Err: o.Err, Finished: o.Finished})
		}
		for _, o := range r.Destinations {
			q.Outcomes = append(q.Outcomes, export.Outcome{Kind: export.OutcomeDestination, Name: o.Name, Status: string(o.Status), Err: o.Err, Finished: o.Finished})
		}
		if err := sink.WriteRequest(q); err != nil {
			return err
		}
	}
	return nil
}

// errExportInterrupted is the reason of an ACCESS request a crash cut short.
var errExportInterrupted = errors.New("the export was interrupted (the process stopped); make the request again")

// failInterruptedAccess ends, as Recover finds it, an ACCESS request a crash
// cut short: the export's reader went with the process, so there is nothing
// to redo, and nothing was changed. The person must ask again.
func (c *Controller) failInterruptedAccess(ctx context.Context, cl *claim, e *journal.Entry) error {
	if _, err := c.fail(ctx, cl, e, errExportInterrupted); err != errExportInterrupted {
		return err // the journal write failed too
	}
	return nil
}

// packageSink builds an export.Package from the sections.
type packageSink struct{ p *export.Package }

func (s *packageSink) WriteHeader(h export.Header) error {
	s.p.Schema, s.p.GeneratedAt, s.p.RequestID = h.Schema, h.GeneratedAt, h.RequestID
	s.p.Profile = profile.Profile{ID: h.ProfileID, Metadata: h.Metadata}
	s.p.Suppression = h.Suppression
	return nil
}

func (s *packageSink) WriteIdentifier(id profile.ExternalID) error {
	s.p.Profile.ExternalIDs = append(s.p.Profile.ExternalIDs, id)
	return nil
}

func (s *packageSink) WriteTrait(key string, t profile.Trait) error {
	if s.p.Profile.Traits == nil {
		s.p.Profile.Traits = map[string]profile.Trait{}
	}
	s.p.Profile.Traits[key] = t
	return nil
}

func (s *packageSink) WriteEvent(ev profile.Event) error {
	s.p.Events = append(s.p.Events, ev)
	return nil
}

func (s *packageSink) WriteAudience(key string) error {
	s.p.Audiences = append(s.p.Audiences, key)
	return nil
}

func (s *packageSink) WriteRequest(r export.Request) error {
	s.p.Requests = append(s.p.Requests, r)
	return nil
}

func (s *packageSink) WriteRecipient(r export.Recipient) error {
	s.p.Recipients = append(s.p.Recipients, r)
	return nil
}

func (s *packageSink) WriteConsentChange(ch profile.ConsentChange) error {
	s.p.ConsentHistory = append(s.p.ConsentHistory, ch)
	return nil
}

func (s *packageSink) WriteAccount(l profile.AccountLink) error {
	s.p.Accounts = append(s.p.Accounts, l)
	return nil
}

func (s *packageSink) Close() error { return nil }
