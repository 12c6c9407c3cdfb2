package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/faultinject"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// controllerChecks run the rights end to end on a privacy.Controller.
var controllerChecks = []struct {
	name string
	run  func(t *testing.T, w *world)
}{
	{"CollectAndRead", ctrlCollectAndRead},
	{"Audiences", ctrlAudiences},
	{"SuppressAndUnsuppress", ctrlSuppressAndUnsuppress},
	{"Rectify", ctrlRectify},
	{"Erase", ctrlErase},
	{"SuppressWithDelete", ctrlSuppressWithDelete},
}

// participants are the backends a right commits, in the Controller's commit
// order, as receipts name them.
var participants = []string{faultinject.Suppressions, faultinject.Identity, faultinject.Profiles, faultinject.Audiences, faultinject.Outbox}

// controllerKey keys the Controllers' hashes; the same across the
// Controllers of one check, as a deployment keeps it across restarts.
var controllerKey = []byte("storetest-controller-key-0123456789")

func runController(t *testing.T, nh HarnessMaker) {
	// Which backends does the adapter provide?
	_, provided := makeWorld(t, newHarness(t, nh))
	if len(provided) == 0 {
		t.Skip("the adapter provides none of the Controller's backends")
	}
	t.Logf("Controller checks use the adapter's %s, and the in-memory defaults for the rest", strings.Join(provided, ", "))
	for _, c := range controllerChecks {
		t.Run(c.name, func(t *testing.T) {
			w, _ := makeWorld(t, newHarness(t, nh))
			c.run(t, w)
		})
	}
	for _, p := range participants {
		t.Run("CommitFailsOnceAfterDecision/"+p, func(t *testing.T) {
			w, _ := makeWorld(t, newHarness(t, nh))
			ctrlCommitFailsOnce(t, w, p)
		})
	}
	for _, p := range participants {
		t.Run("CommitKeepsFailingAfterDecision/"+p, func(t *testing.T) {
			w, _ := makeWorld(t, newHarness(t, nh))
			ctrlCommitKeepsFailing(t, w, p)
		})
	}
	for _, p := range participants {
		t.Run("CrashAtCommitAfterDecision/"+p, func(t *testing.T) {
			w, _ := makeWorld(t, newHarness(t, nh))
			ctrlCrashAtCommit(t, w, p)
		})
	}
}

// world is one set of backends that outlives the Controllers built on it, as
// a database outlives a crashed process.
type world struct {
	ctx       context.Context
	graph     identity.Graph
	profiles  profile.Store
	audiences audience.Store
	supp      suppression.List
	journal   journal.Journal
	auditLog  audit.Log
	outbox    outbox.Store
	rec       *destination.Recorder
	hasher    *identity.Hasher
	faults    *faults // set by the fault checks
}

// makeWorld makes the harness's backends, with the in-memory defaults for
// those it does not provide, and returns the names of those it does.
func makeWorld(t *testing.T, h Harness) (*world, []string) {
	t.Helper()
	ctx := t.Context()
	hs, err := identity.NewHasher(controllerKey)
	must(t, err, "NewHasher")
	w := &world{ctx: ctx, rec: destination.NewRecorder("crm"), hasher: hs}
	var provided []string
	pick := func(what string, err error) bool {
		t.Helper()
		switch {
		case errors.Is(err, ErrNotImplemented):
			return false
		case err != nil:
			t.Fatalf("making the %s: %v", what, err)
		}
		provided = append(provided, what)
		return true
	}
	var (
		g  identity.Graph
		p  profile.Store
		a  audience.Store
		s  suppression.List
		j  journal.Journal
		al audit.Log
	)
	if g, err = h.MakeGraph(ctx); !pick("identity graph", err) {
		g = identity.NewMemGraph()
	}
	if p, err = h.MakeProfiles(ctx); !pick("profile store", err) {
		p = profile.NewMemStore()
	}
	if a, err = h.MakeAudiences(ctx); !pick("audience store", err) {
		a = audience.NewMemStore()
	}
	if s, err = h.MakeSuppressions(ctx); !pick("suppression list", err) {
		s = suppression.NewMemList()
	}
	if j, err = h.MakeJournal(ctx); !pick("journal", err) {
		j = journal.NewMemJournal()
	}
	if al, err = h.MakeAuditLog(ctx); !pick("audit log", err) {
		al = audit.NewMemLog()
	}
	ob, err := makeOutbox(h, ctx)
	if !pick("outbox", err) {
		ob = outbox.NewMemStore()
	}
	w.graph, w.profiles, w.audiences, w.supp, w.journal, w.auditLog, w.outbox = g, p, a, s, j, al, ob
	return w, provided
}

// controller builds a Controller over the world's backends. The fault checks
// put the backend they break, and the journal, behind injectors.
func (w *world) controller(t *testing.T) *privacy.Controller {
	t.Helper()
	var g identity.Graph = w.graph
	var p profile.Store = w.profiles
	var a audience.Store = w.audiences
	var s suppression.List = w.supp
	var j journal.Journal = w.journal
	var ob outbox.Store = w.outbox
	if f := w.faults; f != nil {
		j = faultinject.Journal(j, f.recorded)
		switch f.target {
		case faultinject.Identity:
			g = faultinject.Graph(g, f.at)
		case faultinject.Profiles:
			p = faultinject.ProfileStore(p, f.at)
		case faultinject.Audiences:
			a = faultinject.AudienceStore(a, f.at)
		case faultinject.Suppressions:
			s = faultinject.SuppressionList(s, f.at)
		case faultinject.Outbox:
			ob = faultinject.OutboxStore(ob, f.at)
		}
	}
	c, err := privacy.New(
		privacy.WithIdentity(g), privacy.WithProfiles(p), privacy.WithAudiences(a),
		privacy.WithSuppressions(s), privacy.WithJournal(j), privacy.WithAuditLog(w.auditLog), privacy.WithOutbox(ob),
		privacy.WithDestinations(w.rec), privacy.WithKey(controllerKey),
		privacy.WithInstance("host-1"), // every Controller of the world is the same host, restarted
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 4, Timeout: 10 * time.Second,
			Lease: 200 * time.Millisecond, Poll: 20 * time.Millisecond}),
	)
	must(t, err, "privacy.New")
	t.Cleanup(func() { c.Close() })
	return c
}

func collect(t *testing.T, c *privacy.Controller, msgs ...privacy.Message) {
	t.Helper()
	for _, m := range msgs {
		if err := c.Collect(context.Background(), m); err != nil {
			t.Fatalf("Collect(%+v): %v", m, err)
		}
	}
}

func flush(t *testing.T, c *privacy.Controller) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	must(t, c.Flush(ctx), "Flush")
}

// person is someone collected on two devices: a laptop, then a phone, whose
// profiles merge when they log in on it.
type person struct {
	name                        string
	user, laptop, phone, mail   identity.ID
	pid                         identity.ProfileID
	mergedFrom                  []identity.ProfileID
	ids                         []identity.ID // in the order the profile lists them
	plan                        string
	laptopMessage, phoneMessage string
}

func newPerson(t *testing.T, w *world, c *privacy.Controller, name, plan string) *person {
	t.Helper()
	p := &person{name: name, user: uid(name), laptop: anon(name + "-laptop"), phone: anon(name + "-phone"),
		mail: email(name + "@example.com"), plan: plan, laptopMessage: name + "-t1", phoneMessage: name + "-t2"}
	p.ids = []identity.ID{p.laptop, p.user, p.mail, p.phone}
	collect(t, c,
		privacy.Track{MessageID: p.laptopMessage, AnonymousID: p.laptop.Value, Event: "Viewed",
			Properties: map[string]any{"page": "/pricing", "n": 1.0}, Timestamp: at(0)},
		privacy.Identify{MessageID: name + "-i1", AnonymousID: p.laptop.Value, UserID: name,
			Traits: map[string]any{"email": p.mail.Value, "plan": plan, "phone": "+33 6 00 00 " + name}, Timestamp: at(60)},
		privacy.Track{MessageID: p.phoneMessage, AnonymousID: p.phone.Value, Event: "Opened", Timestamp: at(120)},
		privacy.Identify{MessageID: name + "-i2", AnonymousID: p.phone.Value, UserID: name, Timestamp: at(180)},
	)
	pid, err := w.graph.Lookup(w.ctx, p.user)
	must(t, err, "Lookup of a collected person")
	p.pid = pid
	n, err := w.graph.Node(w.ctx, pid)
	must(t, err, "Node of a collected person")
	for _, m := range n.Merges {
		p.mergedFrom = append(p.mergedFrom, m.From)
	}
	return p
}

func ctrlCollectAndRead(t *testing.T, w *world) {
	ctx := w.ctx
	c := w.controller(t)
	people := []*person{newPerson(t, w, c, "ada", "pro"), newPerson(t, w, c, "bob", "free"), newPerson(t, w, c, "cy", "pro")}
	var pids []identity.ProfileID
	for _, p := range people {
		pids = append(pids, p.pid)
		// Found by every identifier, with every identifier, oldest first.
		for _, id := range p.ids {
			got, err := c.Profile(ctx, id)
			if err != nil {
				t.Errorf("Profile(%s): %v", id, err)
				continue
			}
			if got.ID != p.pid {
				t.Errorf("Profile(%s).ID = %s; want %s", id, got.ID, p.pid)
			}
			var ids []identity.ID
			for _, x := range got.ExternalIDs {
				ids = append(ids, x.ID)
			}
			if d := diff(p.ids, ids); d != "" {
				t.Errorf("Profile(%s).ExternalIDs (-want +got):\n%s", id, d)
			}
			if got.Traits["plan"].Value != p.plan || got.Traits["plan"].Source != profile.SourceIdentify {
				t.Errorf("Profile(%s) trait plan = %+v; want %q from identify", id, got.Traits["plan"], p.plan)
			}
		}
		// The phone's profile was merged into the laptop's, in the graph and in
		// the profile store.
		if len(p.mergedFrom) != 1 {
			t.Errorf("%s's node records merges from %v; want the phone's profile", p.name, p.mergedFrom)
		}
		for _, from := range p.mergedFrom {
			if _, err := w.profiles.Get(ctx, from); !errors.Is(err, profile.ErrNotFound) {
				t.Errorf("the profile merged into %s's is still in the profile store: %v", p.name, err)
			}
			if _, err := w.graph.Node(ctx, from); !errors.Is(err, identity.ErrNotFound) {
				t.Errorf("the profile merged into %s's is still in the graph: %v", p.name, err)
			}
		}
		// Both devices' events, page by page.
		var names []string
		q := profile.EventQuery{Sort: profile.Asc, Limit: 1}
		for i := 0; i < 5; i++ {
			page, err := c.Events(ctx, p.phone, q)
			must(t, err, "Events")
			for _, e := range page.Events {
				names = append(names, e.Name)
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
		if d := diff([]string{"Viewed", "Opened"}, names); d != "" {
			t.Errorf("%s's events (-want +got):\n%s", p.name, d)
		}
		meta, err := c.Metadata(ctx, p.mail)
		must(t, err, "Metadata")
		stored, err := w.profiles.Metadata(ctx, p.pid)
		must(t, err, "profile store Metadata")
		if meta.Version == 0 || meta.Version != stored.Version {
			t.Errorf("%s's metadata version = %d, the store's %d; want the same, above 0", p.name, meta.Version, stored.Version)
		}
	}
	slices.Sort(pids)
	ids, err := w.profiles.IDs(ctx, "", 100)
	must(t, err, "IDs")
	if d := diff(pids, ids); d != "" {
		t.Errorf("the profile store's IDs: one profile per person (-want +got):\n%s", d)
	}
	// A message collected twice is stored once.
	ada := people[0]
	collect(t, c, privacy.Track{MessageID: ada.laptopMessage, AnonymousID: ada.laptop.Value, Event: "Viewed", Timestamp: at(0)})
	if s := c.Stats(); s.Duplicates != 1 {
		t.Errorf("Stats().Duplicates after a repeated message = %d; want 1", s.Duplicates)
	}
	page, err := c.Events(ctx, ada.user, profile.EventQuery{Limit: 10})
	must(t, err, "Events")
	if len(page.Events) != 2 {
		t.Errorf("ada has %d events after a repeated message; want 2", len(page.Events))
	}
	flush(t, c)
	if n := len(w.rec.Messages()); n == 0 {
		t.Error("the destination received nothing of the collected messages")
	}
}

func define(t *testing.T, c *privacy.Controller, key, query string) {
	t.Helper()
	if err := c.DefineAudience(context.Background(), audience.Definition{Key: key, Query: query}); err != nil {
		t.Fatalf("DefineAudience(%s): %v", key, err)
	}
}

func members(t *testing.T, c *privacy.Controller, key string) []identity.ProfileID {
	t.Helper()
	ids, err := c.Members(context.Background(), key)
	must(t, err, "Members("+key+")")
	return ids
}

func sortedPIDs(ps ...*person) []identity.ProfileID {
	var out []identity.ProfileID
	for _, p := range ps {
		out = append(out, p.pid)
	}
	slices.Sort(out)
	return out
}

func ctrlAudiences(t *testing.T, w *world) {
	ctx := w.ctx
	c := w.controller(t)
	late := w.controller(t) // built before anything is defined
	ada, bob, cy := newPerson(t, w, c, "ada", "pro"), newPerson(t, w, c, "bob", "free"), newPerson(t, w, c, "cy", "pro")
	// Defined after the people were collected: membership is computed from the
	// stored traits and events.
	define(t, c, "pro", `trait('plan') = 'pro'`)
	define(t, c, "opened", `event('Opened').count() >= 1`)
	if d := diff(sortedPIDs(ada, cy), members(t, c, "pro")); d != "" {
		t.Errorf("members of pro (-want +got):\n%s", d)
	}
	if d := diff(sortedPIDs(ada, bob, cy), members(t, c, "opened")); d != "" {
		t.Errorf("members of opened, from stored events (-want +got):\n%s", d)
	}
	// Kept current as messages arrive.
	collect(t, c, privacy.Identify{MessageID: "bob-i3", UserID: "bob", Traits: map[string]any{"plan": "pro"}, Timestamp: at(300)})
	collect(t, c, privacy.Identify{MessageID: "cy-i3", UserID: "cy", Traits: map[string]any{"plan": "free"}, Timestamp: at(300)})
	if d := diff(sortedPIDs(ada, bob), members(t, c, "pro")); d != "" {
		t.Errorf("members of pro after bob upgraded and cy downgraded (-want +got):\n%s", d)
	}
	in, err := c.Audiences(ctx, bob.mail)
	must(t, err, "Audiences")
	if d := diff([]string{"opened", "pro"}, in); d != "" {
		t.Errorf("bob's audiences (-want +got):\n%s", d)
	}
	// A Controller started now loads the definitions from the store.
	c2 := w.controller(t)
	if d := diff([]string{"pro", "opened"}, c2.AudienceKeys()); d != "" {
		t.Errorf("audiences a new Controller loaded (-want +got):\n%s", d)
	}
	if d := diff(sortedPIDs(ada, bob), members(t, c2, "pro")); d != "" {
		t.Errorf("members of pro, read by a new Controller (-want +got):\n%s", d)
	}
	// One that did not know of them meets the store's conflict.
	err = late.DefineAudience(ctx, audience.Definition{Key: "pro", Query: `trait('plan') = 'enterprise'`})
	if !errors.Is(err, audience.ErrConflict) && !errors.Is(err, privacy.ErrConflict) {
		t.Errorf("DefineAudience of another query under a key another Controller defined = %v; want a conflict", err)
	}
	defs, err := w.audiences.Definitions(ctx)
	must(t, err, "Definitions")
	if len(defs) != 2 || defs[0].Key != "pro" || !strings.Contains(defs[0].Query, "'pro'") {
		t.Errorf("the store's definitions after the conflict = %+v; want pro (unchanged) and opened", defs)
	}
}

// twoInPro builds a Controller with the audience pro and two people on the
// pro plan, in it.
func twoInPro(t *testing.T, w *world, a, b string) (*privacy.Controller, *person, *person) {
	t.Helper()
	c := w.controller(t)
	define(t, c, "pro", `trait('plan') = 'pro'`)
	return c, newPerson(t, w, c, a, "pro"), newPerson(t, w, c, b, "pro")
}

func ctrlSuppressAndUnsuppress(t *testing.T, w *world) {
	ctx := w.ctx
	c, ada, cy := twoInPro(t, w, "ada", "cy")
	r, err := c.Suppress(ctx, ada.mail)
	if err != nil || r.Status != privacy.Finished {
		t.Fatalf("Suppress = %+v, %v; want FINISHED", r, err)
	}
	blocked := []privacy.Message{
		privacy.Track{AnonymousID: ada.phone.Value, Event: "Opened", Timestamp: at(400)},
		privacy.Track{UserID: "ada", Event: "Opened", Timestamp: at(400)},
		// A new identifier arriving with a suppressed one is blocked too.
		privacy.Identify{UserID: "ada", AnonymousID: "ada-tablet", Timestamp: at(400)},
	}
	for _, m := range blocked {
		if err := c.Collect(ctx, m); !errors.Is(err, privacy.ErrSuppressed) {
			t.Errorf("Collect(%+v) of a suppressed person = %v; want ErrSuppressed", m, err)
		}
	}
	if ok, err := w.supp.ProfileSuppressed(ctx, ada.pid); err != nil || !ok {
		t.Errorf("the suppression list: ProfileSuppressed(ada) = %v, %v; want true", ok, err)
	}
	for _, id := range ada.ids {
		if ok, err := w.supp.Suppressed(ctx, w.hasher.ID(id)); err != nil || !ok {
			t.Errorf("the suppression list: Suppressed(hash of %s) = %v, %v; want true", id, ok, err)
		}
	}
	if _, err := w.graph.Lookup(ctx, anon("ada-tablet")); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("the identifier that arrived with a suppressed one was linked: %v", err)
	}
	if d := diff(sortedPIDs(cy), members(t, c, "pro")); d != "" {
		t.Errorf("members of pro while ada is suppressed (-want +got):\n%s", d)
	}
	// The suppression is in the backends: a new Controller honours it.
	c2 := w.controller(t)
	if err := c2.Collect(ctx, blocked[0]); !errors.Is(err, privacy.ErrSuppressed) {
		t.Errorf("a new Controller's Collect of a suppressed person = %v; want ErrSuppressed", err)
	}
	r, err = c.Unsuppress(ctx, ada.phone)
	if err != nil || r.Status != privacy.Finished {
		t.Fatalf("Unsuppress = %+v, %v; want FINISHED", r, err)
	}
	collect(t, c, privacy.Track{MessageID: "ada-back", UserID: "ada", Event: "Returned", Timestamp: at(500)})
	page, err := c.Events(ctx, ada.user, profile.EventQuery{})
	must(t, err, "Events")
	if len(page.Events) != 3 {
		t.Errorf("ada has %d events after Unsuppress and one more message; want 3", len(page.Events))
	}
	if ok, err := w.supp.ProfileSuppressed(ctx, ada.pid); err != nil || ok {
		t.Errorf("the suppression list: ProfileSuppressed(ada) after Unsuppress = %v, %v; want false", ok, err)
	}
	if d := diff(sortedPIDs(ada, cy), members(t, c, "pro")); d != "" {
		t.Errorf("members of pro after Unsuppress (-want +got):\n%s", d)
	}
}

func ctrlRectify(t *testing.T, w *world) {
	ctx := w.ctx
	c, ada, cy := twoInPro(t, w, "ada", "cy")
	before, err := c.Metadata(ctx, ada.user)
	must(t, err, "Metadata")
	r, err := c.Rectify(ctx, ada.mail, map[string]any{"plan": "free", "phone": nil})
	if err != nil {
		t.Fatalf("Rectify: %v", err)
	}
	flush(t, c)
	r, err = c.Status(ctx, r.ID)
	if err != nil || r.Status != privacy.Finished {
		t.Fatalf("Status of the rectification = %+v, %v; want FINISHED", r, err)
	}
	meta, err := c.Metadata(ctx, ada.laptop)
	must(t, err, "Metadata")
	stored, err := w.profiles.Metadata(ctx, ada.pid)
	must(t, err, "profile store Metadata")
	if r.ProfileVersion <= before.Version || meta.Version != r.ProfileVersion || stored.Version != r.ProfileVersion {
		t.Errorf("versions: before %d, receipt %d, Metadata %d, store %d; want the receipt's, above the one before, everywhere",
			before.Version, r.ProfileVersion, meta.Version, stored.Version)
	}
	p, err := c.Profile(ctx, ada.user)
	must(t, err, "Profile")
	if tr := p.Traits["plan"]; tr.Value != "free" || tr.Source != profile.SourceRectification {
		t.Errorf("trait plan after Rectify = %+v; want free from rectification", tr)
	}
	if tr, ok := p.Traits["phone"]; ok {
		t.Errorf("trait phone after Rectify removed it = %+v; want it gone", tr)
	}
	if d := diff(sortedPIDs(cy), members(t, c, "pro")); d != "" {
		t.Errorf("members of pro after ada's plan was rectified (-want +got):\n%s", d)
	}
	var sent bool
	for _, m := range w.rec.Messages() {
		if m.MessageID == r.ID && m.Type == destination.TypeIdentify && m.Traits["plan"] == "free" {
			sent = true
		}
	}
	if !sent {
		t.Error("the destination did not receive the rectified traits")
	}
	checkJournalDone(t, w, r.ID)
}

// erased checks that the person is gone from every backend and every read.
func erased(t *testing.T, w *world, c *privacy.Controller, p *person) {
	t.Helper()
	ctx := w.ctx
	for _, id := range p.ids {
		if _, err := c.Profile(ctx, id); !errors.Is(err, privacy.ErrNotFound) {
			t.Errorf("Profile(%s) after erasure = %v; want ErrNotFound", id, err)
		}
		if pid, err := w.graph.Lookup(ctx, id); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("the graph still links %s to %s: %v", id, pid, err)
		}
	}
	for _, pid := range append([]identity.ProfileID{p.pid}, p.mergedFrom...) {
		if _, err := w.graph.Node(ctx, pid); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("the graph still has profile %s: %v", pid, err)
		}
		if _, err := w.profiles.Get(ctx, pid); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("the profile store still has profile %s: %v", pid, err)
		}
		if _, err := w.profiles.Events(ctx, pid, profile.EventQuery{}); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("the profile store still has events of %s: %v", pid, err)
		}
		if _, err := w.audiences.State(ctx, pid); !errors.Is(err, audience.ErrNotFound) {
			t.Errorf("the audience store still has the state of %s: %v", pid, err)
		}
	}
	ids, err := w.profiles.IDs(ctx, "", 1000)
	must(t, err, "IDs")
	if slices.Contains(ids, p.pid) {
		t.Errorf("the profile store still lists %s", p.pid)
	}
	for _, key := range []string{"pro"} {
		m, err := w.audiences.Members(ctx, key, "", 0)
		must(t, err, "Members")
		if slices.Contains(m, p.pid) {
			t.Errorf("the audience store still lists %s in %s", p.pid, key)
		}
	}
}

// deletionOf returns the deletion the destination got for the request.
func deletionOf(t *testing.T, w *world, requestID string) *destination.Deletion {
	t.Helper()
	for _, d := range w.rec.Deletions() {
		if d.RequestID == requestID {
			return &d
		}
	}
	return nil
}

// checkDeletion checks that the destination was told to delete the person by
// every identifier.
func checkDeletion(t *testing.T, w *world, requestID string, p *person) {
	t.Helper()
	d := deletionOf(t, w, requestID)
	if d == nil {
		t.Errorf("the destination got no deletion for request %s (got %+v)", requestID, w.rec.Deletions())
		return
	}
	got, want := slices.Clone(d.IDs), slices.Clone(p.ids)
	for _, s := range [][]identity.ID{got, want} {
		slices.SortFunc(s, func(a, b identity.ID) int { return strings.Compare(a.String(), b.String()) })
	}
	if d.ProfileID != p.pid || diff(want, got) != "" {
		t.Errorf("the destination's deletion = %+v; want profile %s with identifiers %v", d, p.pid, want)
	}
}

// checkJournalDone checks that the request finished, keeps no clear data, and
// that nothing is left to recover.
func checkJournalDone(t *testing.T, w *world, requestID string) {
	t.Helper()
	e, err := w.journal.Get(w.ctx, requestID)
	must(t, err, "journal Get")
	if e.Status != privacy.Finished || !e.Decided {
		t.Errorf("the journal has request %s %s (decided %v); want FINISHED and decided", requestID, e.Status, e.Decided)
	}
	if len(e.Subjects) > 0 || len(e.Traits) > 0 {
		t.Errorf("the finished request keeps clear subjects %v or traits %v", e.Subjects, e.Traits)
	}
	for _, f := range e.Decision.Forward {
		if len(f.IDs) > 0 {
			t.Errorf("the finished request keeps the identifiers it forwarded: %v", f.IDs)
		}
	}
	un, err := w.journal.Unfinished(w.ctx)
	must(t, err, "journal Unfinished")
	for _, x := range un {
		t.Errorf("the journal still shows request %s %s", x.ID, x.Status)
	}
}

func ctrlErase(t *testing.T, w *world) {
	ctx := w.ctx
	c := w.controller(t)
	define(t, c, "pro", `trait('plan') = 'pro'`)
	ada, bob, cy := newPerson(t, w, c, "ada", "pro"), newPerson(t, w, c, "bob", "free"), newPerson(t, w, c, "cy", "pro")
	flush(t, c)
	// Any identifier will do: here the phone's anonymous id.
	r, err := c.Erase(ctx, ada.phone)
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	flush(t, c)
	r, err = c.Status(ctx, r.ID)
	if err != nil || r.Status != privacy.Finished {
		t.Fatalf("Status of the erasure = %+v, %v; want FINISHED", r, err)
	}
	for _, o := range append(r.Backends, r.Destinations...) {
		if o.Status != privacy.Finished {
			t.Errorf("the erasure's outcome at %s: %s %s; want FINISHED", o.Name, o.Status, o.Err)
		}
	}
	erased(t, w, c, ada)
	checkDeletion(t, w, r.ID, ada)
	if d := diff(sortedPIDs(cy), members(t, c, "pro")); d != "" {
		t.Errorf("members of pro after ada's erasure (-want +got):\n%s", d)
	}
	page, err := c.Events(ctx, bob.user, profile.EventQuery{})
	if err != nil || len(page.Events) != 2 {
		t.Errorf("bob's events after ada's erasure = %d, %v; want his 2", len(page.Events), err)
	}
	checkJournalDone(t, w, r.ID)
	// A second Controller over the same backends finds nothing to redo.
	c2 := w.controller(t)
	if n, err := c2.Recover(ctx); err != nil || n != 0 {
		t.Errorf("Recover by a second Controller = %d, %v; want 0, nil", n, err)
	}
	if n, err := c2.VerifyAudit(ctx); err != nil || n == 0 {
		t.Errorf("VerifyAudit = %d, %v; want the chain of every request's records", n, err)
	}
	// Erasure is not objection: ada may come back, as someone new.
	collect(t, c2, privacy.Track{MessageID: "ada-returns", UserID: "ada", Event: "Returned", Timestamp: at(900)})
	p, err := c2.Profile(ctx, ada.user)
	must(t, err, "Profile of the returning person")
	if p.ID == ada.pid || len(p.ExternalIDs) != 1 {
		t.Errorf("ada's return = %+v; want a new profile with one identifier", p)
	}
}

func ctrlSuppressWithDelete(t *testing.T, w *world) {
	ctx := w.ctx
	c := w.controller(t)
	ada, cy := newPerson(t, w, c, "ada", "pro"), newPerson(t, w, c, "cy", "pro")
	r, err := c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{ada.user}})
	if err != nil {
		t.Fatalf("Apply(SUPPRESS_WITH_DELETE): %v", err)
	}
	flush(t, c)
	if r, err = c.Status(ctx, r.ID); err != nil || r.Status != privacy.Finished {
		t.Fatalf("Status = %+v, %v; want FINISHED", r, err)
	}
	erased(t, w, c, ada)
	checkDeletion(t, w, r.ID, ada)
	// Every identifier the person was known by stays blocked, by hash only.
	for _, id := range ada.ids {
		if ok, err := w.supp.Suppressed(ctx, w.hasher.ID(id)); err != nil || !ok {
			t.Errorf("the suppression list: Suppressed(hash of %s) = %v, %v; want true", id, ok, err)
		}
	}
	c2 := w.controller(t)
	for _, m := range []privacy.Message{
		privacy.Track{AnonymousID: ada.phone.Value, Event: "Opened", Timestamp: at(900)},
		privacy.Identify{UserID: "someone-new", Traits: map[string]any{"email": ada.mail.Value}, Timestamp: at(900)},
	} {
		if err := c2.Collect(ctx, m); !errors.Is(err, privacy.ErrSuppressed) {
			t.Errorf("Collect(%+v) after SUPPRESS_WITH_DELETE = %v; want ErrSuppressed", m, err)
		}
	}
	if _, err := c2.Profile(ctx, cy.user); err != nil {
		t.Errorf("cy after ada's SUPPRESS_WITH_DELETE: %v", err)
	}
	checkJournalDone(t, w, r.ID)
}

// setupFault collects ada and bob in an audience and arms a fault at the
// target participant's Commit, for after the next journaled decision.
func setupFault(t *testing.T, w *world, target string, mode faultMode) (*privacy.Controller, *person, *person) {
	t.Helper()
	w.faults = &faults{target: target, mode: mode}
	c, ada, bob := twoInPro(t, w, "ada", "bob")
	flush(t, c)
	w.faults.arm()
	return c, ada, bob
}

func ctrlCommitFailsOnce(t *testing.T, w *world, target string) {
	c, ada, bob := setupFault(t, w, target, failOnce)
	r, err := c.Erase(w.ctx, ada.phone)
	if !w.faults.hasFired() {
		t.Fatalf("the %s commit was not reached after the decision (Erase = %+v, %v)", target, r, err)
	}
	// Decided, so the Controller retries the commit: the redo stages every
	// write again, on backends where some already committed.
	if err != nil {
		t.Fatalf("Erase with one failed %s commit after the decision = %v; want it retried and finished", target, err)
	}
	checkErasureFinished(t, w, c, r.ID, ada, bob, "")
	w.faults = nil
	if n, err := w.controller(t).Recover(w.ctx); err != nil || n != 0 {
		t.Errorf("Recover by a second Controller = %d, %v; want 0, nil", n, err)
	}
}

func ctrlCommitKeepsFailing(t *testing.T, w *world, target string) {
	c, ada, bob := setupFault(t, w, target, failAlways)
	r, err := c.Erase(w.ctx, ada.phone)
	if !w.faults.hasFired() {
		t.Fatalf("the %s commit was not reached after the decision (Erase = %+v, %v)", target, r, err)
	}
	// Decided, but the commit failed however often the Controller retried it:
	// the request stays RUNNING, for Recover.
	if err == nil || r == nil || r.Status != privacy.Running {
		t.Fatalf("Erase with every %s commit failing after the decision = %+v, %v; want an error and a RUNNING receipt", target, r, err)
	}
	w.faults.disarm()
	recoverErasure(t, w, r.ID, ada, bob)
}

func ctrlCrashAtCommit(t *testing.T, w *world, target string) {
	c, ada, bob := setupFault(t, w, target, crash)
	if crashed := faultinject.Survive(func() { _, _ = c.Erase(w.ctx, ada.phone) }); !crashed {
		t.Fatalf("the process did not crash at the %s commit after the decision", target)
	}
	c.Close() // the process is gone
	un, err := w.journal.Unfinished(w.ctx)
	must(t, err, "journal Unfinished")
	if len(un) != 1 || !un[0].Decided {
		t.Fatalf("the journal after the crash shows %d unfinished requests (%+v); want the decided erasure", len(un), un)
	}
	recoverErasure(t, w, un[0].ID, ada, bob)
	if n, err := w.controller(t).Recover(w.ctx); err != nil || n != 0 {
		t.Errorf("Recover by a third Controller = %d, %v; want 0, nil", n, err)
	}
}

// recoverErasure has a new process over the same backends (a Controller
// without faults) complete the decided erasure of ada, and checks it.
func recoverErasure(t *testing.T, w *world, requestID string, ada, bob *person) {
	t.Helper()
	w.faults = nil
	c2 := w.controller(t)
	if n, err := c2.Recover(w.ctx); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
	}
	checkErasureFinished(t, w, c2, requestID, ada, bob, " after recovery")
}

// checkErasureFinished checks that the erasure of ada finished: FINISHED,
// nothing of her left, the deletion forwarded, bob still in the audience, the
// journal done.
func checkErasureFinished(t *testing.T, w *world, c *privacy.Controller, requestID string, ada, bob *person, when string) {
	t.Helper()
	flush(t, c)
	if r, err := c.Status(w.ctx, requestID); err != nil || r.Status != privacy.Finished {
		t.Fatalf("Status%s = %+v, %v; want FINISHED", when, r, err)
	}
	erased(t, w, c, ada)
	checkDeletion(t, w, requestID, ada)
	if d := diff(sortedPIDs(bob), members(t, c, "pro")); d != "" {
		t.Errorf("members of pro%s (-want +got):\n%s", when, d)
	}
	checkJournalDone(t, w, requestID)
}

// faultMode is how an armed fault strikes.
type faultMode int

const (
	// failOnce fails the target's next Commit with errInjected.
	failOnce faultMode = iota
	// failAlways fails every Commit of the target with errInjected, until
	// disarmed.
	failAlways
	// crash ends the process (faultinject.ErrCrash) in the target's next
	// Commit.
	crash
)

var errInjected = errors.New("storetest: injected commit failure")

// faults strikes at the target participant's Commit after the journal
// recorded a decision, once armed: once, or until disarmed (failAlways).
type faults struct {
	target string
	mode   faultMode
	mu     sync.Mutex
	armed  bool // the check is ready for the fault
	ready  bool // a decision was journaled since arm
	fired  bool
}

func (f *faults) arm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = true
}

func (f *faults) disarm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed, f.ready = false, false
}

func (f *faults) hasFired() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fired
}

// recorded notes, once armed, that the journal recorded a decision.
func (f *faults) recorded(e *journal.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.Decided && e.Status == privacy.Running && f.armed && !f.fired {
		f.ready = true
	}
	return nil
}

// at is the faultinject.Plan: it strikes at the target's Commit when it is
// time. The wrapper ends the transaction as a failed commit or a dead process
// would (nothing of it committed), then fails or panics.
func (f *faults) at(p faultinject.Point) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.Step != faultinject.Commit || !f.ready || p.Backend != f.target || (f.fired && f.mode != failAlways) {
		return nil
	}
	f.fired = true
	if f.mode == crash {
		return faultinject.ErrCrash
	}
	return fmt.Errorf("%s commit: %w", p.Backend, errInjected)
}
