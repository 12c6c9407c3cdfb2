package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
	"github.com/gdprkit/privacy/txscope"
)

// batchWorld is a Controller over in-memory backends, with a destination.
type batchWorld struct {
	c    *privacy.Controller
	rec  *destination.Recorder
	auds *audience.MemStore
}

func newBatchWorld(t *testing.T, opts ...privacy.Option) *batchWorld {
	t.Helper()
	w := &batchWorld{rec: destination.NewRecorder("crm"), auds: audience.NewMemStore()}
	opts = append([]privacy.Option{privacy.WithDestinations(w.rec), privacy.WithAudiences(w.auds), privacy.WithKey(worldKey), testLimits,
		privacy.WithClock(func() time.Time { return t0 })}, opts...)
	c, err := privacy.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w.c = c
	return w
}

// mixedBatch is a batch with every kind of message: identifies that create
// and merge profiles, tracks about known and unknown people, a repeat, bad
// input.
func mixedBatch() []privacy.Message {
	var msgs []privacy.Message
	for i := range 4 {
		msgs = append(msgs, privacy.Identify{MessageID: fmt.Sprintf("id-%d", i), UserID: fmt.Sprintf("u%d", i),
			Traits: map[string]any{"plan": "pro", "n": i}, Timestamp: at(i)})
	}
	for i := range 40 {
		msgs = append(msgs, privacy.Track{MessageID: fmt.Sprintf("tr-%d", i), UserID: fmt.Sprintf("u%d", i%4),
			Event: "Viewed", Properties: map[string]any{"i": i}, Timestamp: at(10 + i)})
	}
	msgs = append(msgs,
		privacy.Track{MessageID: "anon-1", AnonymousID: "a9", Event: "Viewed", Timestamp: at(60)}, // a new person
		privacy.Identify{MessageID: "link-1", UserID: "u1", AnonymousID: "a9", Timestamp: at(61)}, // merges them
		privacy.Track{MessageID: "tr-3", UserID: "u3", Event: "Viewed", Timestamp: at(62)},        // a repeat
		privacy.Track{MessageID: "bad-1", UserID: "u2", Timestamp: at(63)},                        // no event
		privacy.Track{MessageID: "tr-3", UserID: "u3", Event: "Viewed", Timestamp: at(62)},        // a repeat again
		privacy.Track{MessageID: "tr-late", UserID: "u2", Event: "Bought", Timestamp: at(5)},      // an older event
		privacy.Identify{MessageID: "id-late", UserID: "u0", Traits: map[string]any{"n": 9}, Timestamp: at(70)},
	)
	return msgs
}

// personState is what the comparison looks at for one person.
type personState struct {
	Traits    map[string]any
	Events    []string
	Version   uint64
	FirstSeen time.Time
	LastSeen  time.Time
	Members   []string
}

func statesOf(t *testing.T, c *privacy.Controller, people ...identity.ID) map[string]personState {
	t.Helper()
	ctx := context.Background()
	out := map[string]personState{}
	for _, id := range people {
		p, err := c.Profile(ctx, id)
		if err != nil {
			t.Fatalf("Profile(%s): %v", id, err)
		}
		s := personState{Traits: map[string]any{}, Version: p.Metadata.Version, FirstSeen: p.Metadata.FirstSeen, LastSeen: p.Metadata.LastSeen}
		for k, tr := range p.Traits {
			s.Traits[k] = tr.Value
		}
		page, err := c.Events(ctx, id, profile.EventQuery{Sort: profile.Asc, Limit: profile.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			s.Events = append(s.Events, e.MessageID+"@"+e.Timestamp.Format(time.TimeOnly))
		}
		for _, key := range []string{"pro", "viewers"} {
			members, err := c.Members(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(members, p.ID) {
				s.Members = append(s.Members, key)
			}
		}
		out[id.String()] = s
	}
	return out
}

func defineBatchAudiences(t *testing.T, c *privacy.Controller) {
	t.Helper()
	for _, d := range []audience.Definition{
		{Key: "pro", Query: `trait('plan') = 'pro'`},
		{Key: "viewers", Query: `event('Viewed').count() >= 10`},
	} {
		if err := c.DefineAudience(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCollectBatchMatchesCollect collects the same messages one at a time and
// in a batch: the people, their events, versions, memberships and what the
// destination heard must be the same, and so must the statistics.
func TestCollectBatchMatchesCollect(t *testing.T) {
	one, batch := newBatchWorld(t), newBatchWorld(t)
	defineBatchAudiences(t, one.c)
	defineBatchAudiences(t, batch.c)

	// The second batch is about people the first made known: its identifies
	// are stored together with its tracks.
	for round, msgs := range [][]privacy.Message{mixedBatch(), knownPeopleBatch()} {
		compareBatch(t, one, batch, msgs)
		if t.Failed() {
			t.Fatalf("batch %d differs", round)
		}
	}
}

// knownPeopleBatch changes the traits of the people mixedBatch made known,
// between their events: newer and older values, removals, a repeat.
func knownPeopleBatch() []privacy.Message {
	return []privacy.Message{
		privacy.Track{MessageID: "k1", UserID: "u2", Event: "Viewed", Timestamp: at(80)},
		privacy.Identify{MessageID: "k2", UserID: "u2", Traits: map[string]any{"plan": "free", "seats": 3}, Timestamp: at(81)},
		privacy.Track{MessageID: "k3", UserID: "u2", Event: "Viewed", Timestamp: at(82)},
		privacy.Identify{MessageID: "k4", UserID: "u2", Traits: map[string]any{"plan": "enterprise"}, Timestamp: at(1)}, // older: loses
		privacy.Identify{MessageID: "k5", UserID: "u3", Traits: map[string]any{"plan": nil}, Timestamp: at(83)},         // removes
		privacy.Identify{MessageID: "k6", UserID: "u3", Traits: map[string]any{"plan": "pro"}, Timestamp: at(84)},       // sets again
		privacy.Identify{MessageID: "k2", UserID: "u2", Traits: map[string]any{"plan": "free", "seats": 3}, Timestamp: at(81)},
		privacy.Identify{MessageID: "k7", UserID: "u0", AnonymousID: "a9", Traits: map[string]any{"n": 1}, Timestamp: at(85)}, // merges
		privacy.Track{MessageID: "k8", UserID: "u1", Event: "Viewed", Timestamp: at(86)},
		privacy.Identify{MessageID: "k9", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(87)},
	}
}

// compareBatch collects msgs one at a time through one and as a batch
// through batch, and compares what they did.
func compareBatch(t *testing.T, one, batch *batchWorld, msgs []privacy.Message) {
	t.Helper()
	ctx := context.Background()
	var wantErrs []error
	for _, m := range msgs {
		wantErrs = append(wantErrs, one.c.Collect(ctx, m))
	}
	err := batch.c.CollectBatch(ctx, msgs)
	if !slices.ContainsFunc(wantErrs, func(err error) bool { return err != nil }) {
		if err != nil {
			t.Errorf("CollectBatch = %v, want nil as one at a time", err)
		}
	} else {
		checkBatchErrors(t, err, wantErrs)
	}
	people := []identity.ID{user("u0"), user("u1"), user("u2"), user("u3"), anon("a9")}
	if diff := cmp.Diff(statesOf(t, one.c, people...), statesOf(t, batch.c, people...)); diff != "" {
		t.Errorf("people differ, one at a time (-) vs batch (+):\n%s", diff)
	}
	if got, want := batch.c.Stats(), one.c.Stats(); got != want {
		t.Errorf("Stats: batch %+v, one at a time %+v", got, want)
	}
	flushBoth(t, one.c, batch.c)
	if diff := cmp.Diff(sentIDs(one.rec), sentIDs(batch.rec)); diff != "" {
		t.Errorf("the destination heard other messages (-one, +batch):\n%s", diff)
	}
}

// checkBatchErrors checks that err is a *BatchError with the errors the
// messages got one at a time (mixedBatch's: one refused for its Event).
func checkBatchErrors(t *testing.T, err error, wantErrs []error) {
	t.Helper()
	var be *privacy.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("CollectBatch = %v, want a *BatchError for the bad message", err)
	}
	if len(be.Errs) != len(wantErrs) {
		t.Fatalf("BatchError has %d entries, want %d", len(be.Errs), len(wantErrs))
	}
	for i := range wantErrs {
		if (wantErrs[i] == nil) != (be.Errs[i] == nil) || (wantErrs[i] != nil && wantErrs[i].Error() != be.Errs[i].Error()) {
			t.Errorf("message %d: batch error %v, one at a time %v", i, be.Errs[i], wantErrs[i])
		}
	}
	if !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	var fe *privacy.FieldError
	if !errors.As(err, &fe) || fe.Field != "Event" {
		t.Errorf("errors.As FieldError = %v, want the Event field", fe)
	}
}

func flushBoth(t *testing.T, cs ...*privacy.Controller) {
	t.Helper()
	for _, c := range cs {
		if err := c.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// sentIDs is what a destination heard, sorted: message ids, and audience
// changes by event name.
func sentIDs(rec *destination.Recorder) []string {
	var out []string
	for _, m := range rec.Messages() {
		if m.Type == destination.TypeTrack && m.Event != "Viewed" && m.Event != "Bought" {
			out = append(out, m.Event+" "+fmt.Sprint(m.Properties["audience_key"]))
			continue
		}
		out = append(out, m.Type+" "+m.MessageID)
	}
	slices.Sort(out)
	return out
}

// TestCollectBatchRefusesSuppressedPeopleOnly: the messages about a person who
// objected are refused with ErrSuppressed, the others are stored.
func TestCollectBatchRefusesSuppressedPeopleOnly(t *testing.T) {
	ctx := context.Background()
	w := newBatchWorld(t)
	for _, u := range []string{"ada", "bob"} {
		if err := w.c.Collect(ctx, privacy.Identify{UserID: u, Traits: map[string]any{"plan": "pro"}, Timestamp: at(0)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.c.Suppress(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	before := w.c.Stats()
	msgs := []privacy.Message{
		privacy.Track{MessageID: "b1", UserID: "bob", Event: "Viewed", Timestamp: at(1)},
		privacy.Track{MessageID: "a1", UserID: "ada", Event: "Viewed", Timestamp: at(2)},
		privacy.Track{MessageID: "b2", UserID: "bob", Event: "Viewed", Timestamp: at(3)},
		privacy.Track{MessageID: "a2", UserID: "ada", AnonymousID: "ada-phone", Event: "Viewed", Timestamp: at(4)},
	}
	err := w.c.CollectBatch(ctx, msgs)
	var be *privacy.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("CollectBatch = %v, want a *BatchError", err)
	}
	for i, want := range []error{nil, privacy.ErrSuppressed, nil, privacy.ErrSuppressed} {
		if !errors.Is(be.Errs[i], want) || (want == nil && be.Errs[i] != nil) {
			t.Errorf("message %d: %v, want %v", i, be.Errs[i], want)
		}
	}
	if got := len(mustEvents(t, w.c, user("bob"))); got != 2 {
		t.Errorf("bob has %d events, want 2", got)
	}
	if got := len(mustEvents(t, w.c, user("ada"))); got != 0 {
		t.Errorf("ada, who objected, has %d events", got)
	}
	after := w.c.Stats()
	if after.Suppressed-before.Suppressed != 2 || after.Collected-before.Collected != 2 {
		t.Errorf("Stats moved from %+v to %+v, want 2 suppressed and 2 collected", before, after)
	}
}

// TestCollectBatchLargerThanBatchSize: a batch of several pieces, sent twice,
// stores each message once and counts the second sending as repeats.
func TestCollectBatchLargerThanBatchSize(t *testing.T) {
	ctx := context.Background()
	w := newBatchWorld(t)
	var msgs []privacy.Message
	for i := range 2*privacy.BatchSize + 7 {
		msgs = append(msgs, privacy.Track{MessageID: fmt.Sprintf("m%d", i), UserID: fmt.Sprintf("u%d", i%13),
			Event: "Viewed", Timestamp: at(i)})
	}
	for round := range 2 {
		if err := w.c.CollectBatch(ctx, msgs); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	total := 0
	for u := range 13 {
		total += len(mustEvents(t, w.c, user(fmt.Sprintf("u%d", u))))
	}
	if total != len(msgs) {
		t.Errorf("%d events stored, want %d", total, len(msgs))
	}
	st := w.c.Stats()
	if st.Collected != uint64(len(msgs)) || st.Duplicates != uint64(len(msgs)) {
		t.Errorf("Stats = %+v, want %d collected and %d duplicates", st, len(msgs), len(msgs))
	}
	if err := w.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(w.rec.Messages()); got != len(msgs) {
		t.Errorf("the destination heard %d messages, want %d", got, len(msgs))
	}
	p, err := w.c.Profile(ctx, user("u0"))
	if err != nil {
		t.Fatal(err)
	}
	// u0 got one identify-free create (the first message) plus one version per
	// stored message: ceil(1007/13) messages.
	if want := uint64((len(msgs) + 12) / 13); p.Metadata.Version != want {
		t.Errorf("u0's version = %d, want %d (one per stored message)", p.Metadata.Version, want)
	}
}

// TestCollectBatchFailureStoresNothing: when the profile store fails, every
// message of the batch reports it and nothing is stored or sent.
func TestCollectBatchFailureStoresNothing(t *testing.T) {
	ctx := context.Background()
	var failing atomic.Bool
	w := newBatchWorld(t, privacy.WithProfiles(&commitFaults{Store: profile.NewMemStore(), fault: func() error {
		if failing.Load() {
			return errCommitFailed
		}
		return nil
	}}))
	for _, u := range []string{"ada", "bob"} {
		if err := w.c.Collect(ctx, privacy.Track{UserID: u, Event: "Signed Up", Timestamp: at(0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sent := len(w.rec.Messages())
	failing.Store(true)
	msgs := []privacy.Message{
		privacy.Track{MessageID: "x1", UserID: "ada", Event: "Viewed", Timestamp: at(1)},
		privacy.Track{MessageID: "x2", UserID: "bob", Event: "Viewed", Timestamp: at(2)},
	}
	err := w.c.CollectBatch(ctx, msgs)
	var be *privacy.BatchError
	if !errors.As(err, &be) || !errors.Is(be.Errs[0], errCommitFailed) || !errors.Is(be.Errs[1], errCommitFailed) {
		t.Fatalf("CollectBatch = %v, want the commit failure for both messages", err)
	}
	for _, u := range []string{"ada", "bob"} {
		if got := len(mustEvents(t, w.c, user(u))); got != 1 {
			t.Errorf("%s has %d events after a failed batch, want 1", u, got)
		}
	}
	if err := w.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(w.rec.Messages()); got != sent {
		t.Errorf("the destination heard %d messages of a failed batch", got-sent)
	}
	// Sent again once the store is back, the batch is stored in full.
	failing.Store(false)
	if err := w.c.CollectBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ada", "bob"} {
		if got := len(mustEvents(t, w.c, user(u))); got != 2 {
			t.Errorf("%s has %d events, want 2", u, got)
		}
	}
}

var errCommitFailed = errors.New("test: commit failed")

// commitFaults is a profile store whose Commit asks fault first: an error
// rolls the transaction back and is returned. Its transactions keep the
// store's batch methods.
type commitFaults struct {
	profile.Store
	fault func() error
}

type commitFaultsTx struct {
	profile.Tx
	profile.BatchTx
	fault func() error
}

func (s *commitFaults) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return commitFaultsTx{tx, tx.(profile.BatchTx), s.fault}, nil
}

func (tx commitFaultsTx) Commit(ctx context.Context) error {
	if err := tx.fault(); err != nil {
		tx.Tx.Rollback(ctx)
		return err
	}
	return tx.Tx.Commit(ctx)
}

// scopedCommitFaults is commitFaults joining txscope scopes, as a SQL
// backend does: the Controller then retries what fails with txscope.ErrRetry.
type scopedCommitFaults struct{ *commitFaults }

func (scopedCommitFaults) JoinsTxScope() {}

// TestCollectBatchRacesRights collects batches about people while they are
// erased and suppressed: a suppressed person gains nothing after the
// suppression, and an erased one is not resurrected by a batch that looked
// them up before the erasure.
func TestCollectBatchRacesRights(t *testing.T) {
	ctx := context.Background()
	supp := suppression.NewMemList()
	w := newBatchWorld(t, privacy.WithSuppressions(supp))
	const people = 20
	for i := range people {
		if err := w.c.Collect(ctx, privacy.Identify{UserID: fmt.Sprintf("p%d", i), Timestamp: at(0)}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 30 {
				var msgs []privacy.Message
				for i := range people {
					msgs = append(msgs, privacy.Track{MessageID: fmt.Sprintf("g%d-r%d-p%d", g, round, i),
						UserID: fmt.Sprintf("p%d", i), Event: "Viewed", Timestamp: at(round)})
				}
				err := w.c.CollectBatch(ctx, msgs)
				var be *privacy.BatchError
				if err != nil && !errors.As(err, &be) {
					t.Error(err)
					return
				}
				if be != nil {
					for _, e := range be.Errs {
						if e != nil && !errors.Is(e, privacy.ErrSuppressed) {
							t.Errorf("unexpected error: %v", e)
						}
					}
				}
			}
		}()
	}
	// Suppress the even people and erase-with-suppression the odd ones.
	for i := range people {
		var err error
		if i%2 == 0 {
			_, err = w.c.Suppress(ctx, user(fmt.Sprintf("p%d", i)))
		} else {
			_, err = w.c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{user(fmt.Sprintf("p%d", i))}})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// The suppressed people's event counts, now: nothing may be added later.
	frozen := map[int]int{}
	for i := 0; i < people; i += 2 {
		frozen[i] = len(mustEvents(t, w.c, user(fmt.Sprintf("p%d", i))))
	}
	wg.Wait()
	for i := range people {
		id := user(fmt.Sprintf("p%d", i))
		if i%2 == 0 {
			if got := len(mustEvents(t, w.c, id)); got != frozen[i] {
				t.Errorf("%s gained %d events after objecting", id, got-frozen[i])
			}
			continue
		}
		if _, err := w.c.Profile(ctx, id); !errors.Is(err, privacy.ErrNotFound) {
			t.Errorf("%s was erased and suppressed, but Profile = %v", id, err)
		}
	}
}

// TestCollectBatchEdges: an empty batch, a closed Controller.
func TestCollectBatchEdges(t *testing.T) {
	ctx := context.Background()
	w := newBatchWorld(t)
	if err := w.c.CollectBatch(ctx, nil); err != nil {
		t.Errorf("CollectBatch(nil) = %v", err)
	}
	var nilTrack *privacy.Track
	err := w.c.CollectBatch(ctx, []privacy.Message{nilTrack})
	if !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("CollectBatch(nil message) = %v, want ErrInvalid", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "privacy: 1 of 1 messages not collected; message 0: ") {
		t.Errorf("BatchError text = %q", msg)
	}
	w.c.Close()
	if err := w.c.CollectBatch(ctx, []privacy.Message{privacy.Track{UserID: "x", Event: "e", Timestamp: at(0)}}); !errors.Is(err, privacy.ErrClosed) {
		t.Errorf("CollectBatch on a closed Controller = %v, want ErrClosed", err)
	}
}

// countingProfiles counts the transactions begun on a profile store and the
// batch calls made in them.
type countingProfiles struct {
	profile.Store
	mu                    sync.Mutex
	begins, batches, ones int
}

type countingProfilesTx struct {
	profile.Tx
	s *countingProfiles
}

func (s *countingProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	s.mu.Lock()
	s.begins++
	s.mu.Unlock()
	tx, err := s.Store.Begin(ctx)
	return countingProfilesTx{tx, s}, err
}

func (tx countingProfilesTx) Update(ctx context.Context, pid identity.ProfileID, u profile.Update) error {
	tx.s.mu.Lock()
	tx.s.ones++
	tx.s.mu.Unlock()
	return tx.Tx.Update(ctx, pid, u)
}

func (tx countingProfilesTx) MetadataBatch(ctx context.Context, pids []identity.ProfileID) (map[identity.ProfileID]profile.Metadata, error) {
	return tx.Tx.(profile.BatchTx).MetadataBatch(ctx, pids)
}

func (tx countingProfilesTx) PickTraitsBatch(ctx context.Context, pids []identity.ProfileID, names []string) (map[identity.ProfileID][]any, error) {
	return tx.Tx.(profile.BatchTx).PickTraitsBatch(ctx, pids, names)
}

func (tx countingProfilesTx) UpdateBatch(ctx context.Context, us []profile.BatchUpdate, dup []bool) ([]bool, error) {
	tx.s.mu.Lock()
	tx.s.batches++
	tx.s.mu.Unlock()
	return tx.Tx.(profile.BatchTx).UpdateBatch(ctx, us, dup)
}

// TestCollectBatchStoresKnownPeopleTogether: messages about known people are
// stored in one transaction with one UpdateBatch; a new person's message goes
// the one-at-a-time way.
func TestCollectBatchStoresKnownPeopleTogether(t *testing.T) {
	ctx := context.Background()
	counted := &countingProfiles{Store: profile.NewMemStore()}
	w := newBatchWorld(t, privacy.WithProfiles(counted))
	for i := range 5 {
		if err := w.c.Collect(ctx, privacy.Identify{UserID: fmt.Sprintf("k%d", i), Timestamp: at(0)}); err != nil {
			t.Fatal(err)
		}
	}
	counted.begins, counted.ones = 0, 0
	var msgs []privacy.Message
	for i := range 100 {
		msgs = append(msgs, privacy.Track{UserID: fmt.Sprintf("k%d", i%5), Event: "Viewed", Timestamp: at(i)})
	}
	for i := range 5 {
		msgs = append(msgs, privacy.Identify{UserID: fmt.Sprintf("k%d", i), Traits: map[string]any{"plan": "pro"}, Timestamp: at(i)})
	}
	msgs = append(msgs, privacy.Track{UserID: "newcomer", Event: "Viewed", Timestamp: at(1)})
	if err := w.c.CollectBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if counted.begins != 2 || counted.batches != 1 || counted.ones != 1 {
		t.Errorf("profile store: %d transactions, %d UpdateBatch and %d Update calls; want 2, 1 and 1 (the newcomer's)",
			counted.begins, counted.batches, counted.ones)
	}
	if got := w.c.Stats().Collected; got != 111 {
		t.Errorf("Stats().Collected = %d, want 111", got)
	}
	if p := mustProfile(t, w.c, user("k3")); p.Traits["plan"].Value != "pro" {
		t.Errorf("k3's plan = %v, want pro", p.Traits["plan"].Value)
	}
}

// Backends that hide their optional batch interfaces, so that CollectBatch
// falls back to one call per profile or message.
type (
	plainGraph        struct{ identity.Graph }
	plainProfiles     struct{ profile.Store }
	plainProfilesTx   struct{ profile.Tx }
	plainAudiences    struct{ audience.Store }
	plainAudiencesTx  struct{ audience.Tx }
	plainSuppressions struct{ suppression.List }
)

func (s plainProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	return plainProfilesTx{tx}, err
}

func (s plainAudiences) Begin(ctx context.Context) (audience.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	return plainAudiencesTx{tx}, err
}

// TestCollectBatchWithoutBatchInterfaces is TestCollectBatchMatchesCollect on
// backends without the optional batch interfaces (nor TraitPicker and
// Modifier): the same people, memberships and messages.
func TestCollectBatchWithoutBatchInterfaces(t *testing.T) {
	one := newBatchWorld(t)
	plain := newBatchWorld(t,
		privacy.WithIdentity(plainGraph{identity.NewMemGraph()}),
		privacy.WithProfiles(plainProfiles{profile.NewMemStore()}),
		privacy.WithAudiences(plainAudiences{audience.NewMemStore()}),
		privacy.WithSuppressions(plainSuppressions{suppression.NewMemList()}))
	for _, c := range []*privacy.Controller{one.c, plain.c} {
		defineBatchAudiences(t, c)
	}
	for round, msgs := range [][]privacy.Message{mixedBatch(), knownPeopleBatch()} {
		compareBatch(t, one, plain, msgs)
		if t.Failed() {
			t.Fatalf("batch %d differs", round)
		}
	}
}

// TestCollectBatchRepeatAfterRemoval sends again an identify whose trait was
// removed since, before another message about the person: the batch must not
// take the repeat's traits (or a version) as applied, as one at a time would
// not. (A review found it did.)
func TestCollectBatchRepeatAfterRemoval(t *testing.T) {
	for _, tc := range []struct {
		name string
		next privacy.Message
	}{
		{"audience", privacy.Identify{MessageID: "m4", UserID: "u1", Traits: map[string]any{"name": "bob"}, Timestamp: at(30)}},
		{"lww", privacy.Identify{MessageID: "m5", UserID: "u1", Traits: map[string]any{"plan": "basic"}, Timestamp: at(5)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			one, batch := newBatchWorld(t), newBatchWorld(t)
			defineBatchAudiences(t, one.c)
			defineBatchAudiences(t, batch.c)
			ctx := context.Background()
			m1 := privacy.Identify{MessageID: "m1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(10)}
			m2 := privacy.Identify{MessageID: "m2", UserID: "u1", Traits: map[string]any{"plan": nil}, Timestamp: at(20)}
			for _, w := range []*batchWorld{one, batch} {
				if err := w.c.CollectBatch(ctx, []privacy.Message{m1}); err != nil {
					t.Fatal(err)
				}
				if err := w.c.Collect(ctx, m2); err != nil {
					t.Fatal(err)
				}
			}
			sameAsOneAtATime(t, one, batch, []privacy.Message{m1, tc.next})
		})
	}
}

// TestCollectBatchRetryForgetsTheFailedAttempt: between two attempts at a
// batch, the person is erased and one of their identifiers goes to someone
// else; the second attempt must not evaluate that someone with the traits of
// the first. (A review found it did.)
func TestCollectBatchRetryForgetsTheFailedAttempt(t *testing.T) {
	ctx := context.Background()
	g := identity.NewMemGraph()
	var commits atomic.Int32
	var meanwhile func() // what another process does between the attempts
	ps := scopedCommitFaults{&commitFaults{Store: profile.NewMemStore(), fault: func() error {
		if meanwhile != nil && commits.Add(1) == 1 {
			meanwhile()
			return txscope.ErrRetry
		}
		return nil
	}}}
	w := newBatchWorld(t, privacy.WithIdentity(g), privacy.WithProfiles(ps))
	defineBatchAudiences(t, w.c)
	// P has user:u1 and anon:a1.
	if err := w.c.Collect(ctx, privacy.Identify{MessageID: "seed", UserID: "u1", AnonymousID: "a1", Timestamp: at(1)}); err != nil {
		t.Fatal(err)
	}
	p, _ := g.Lookup(ctx, user("u1"))
	var r identity.ProfileID = "use_other"
	meanwhile = func() {
		// Meanwhile: P erased, anon:a1 now someone else's (R).
		gtx, _ := g.Begin(ctx)
		gtx.Delete(ctx, p)
		gtx.Create(ctx, r, t0)
		gtx.Link(ctx, r, identity.Link{ID: anon("a1"), LinkedAt: t0})
		if err := gtx.Commit(ctx); err != nil {
			t.Error(err)
		}
	}
	err := w.c.CollectBatch(ctx, []privacy.Message{
		privacy.Identify{MessageID: "i", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(2)},
		privacy.Track{MessageID: "t", AnonymousID: "a1", Event: "Viewed", Timestamp: at(3)},
	})
	if err != nil {
		t.Fatalf("CollectBatch = %v", err)
	}
	members, _ := w.c.Members(ctx, "pro")
	if rp := mustProfile(t, w.c, anon("a1")); rp.ID != r || len(rp.Traits) != 0 {
		t.Errorf("a1's profile = %s with %v, want %s without traits", rp.ID, rp.Traits, r)
	}
	for _, m := range members {
		if m == r {
			t.Errorf("R (no traits) is in audience pro: evaluated with P's traits from the rolled-back attempt")
		}
	}
}

// TestCollectBatchKeepsEachPersonsOrder: a person's message left to the
// one-at-a-time path keeps the person's later messages behind it; otherwise a
// removal (which leaves no timestamp behind) would run before an older set.
// (A review found it did.)
func TestCollectBatchKeepsEachPersonsOrder(t *testing.T) {
	ctx := context.Background()
	one, batch := newBatchWorld(t), newBatchWorld(t)
	defineBatchAudiences(t, one.c)
	defineBatchAudiences(t, batch.c)
	seed := privacy.Identify{MessageID: "seed", UserID: "u1", Timestamp: at(0)}
	msgs := []privacy.Message{
		privacy.Identify{MessageID: "m1", UserID: "u1", AnonymousID: "a-new", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)},
		privacy.Identify{MessageID: "m2", UserID: "u1", Traits: map[string]any{"plan": nil}, Timestamp: at(2)},
	}
	for _, w := range []*batchWorld{one, batch} {
		if err := w.c.Collect(ctx, seed); err != nil {
			t.Fatal(err)
		}
	}
	sameAsOneAtATime(t, one, batch, msgs)
}

// sameAsOneAtATime collects msgs one at a time into one and as a batch into
// batch, each without an error, and compares the person u1 in both.
func sameAsOneAtATime(t *testing.T, one, batch *batchWorld, msgs []privacy.Message) {
	t.Helper()
	ctx := context.Background()
	for _, m := range msgs {
		if err := one.c.Collect(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.c.CollectBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	a, b := statesOf(t, one.c, user("u1")), statesOf(t, batch.c, user("u1"))
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("differ (-one +batch):\n%s", diff)
	}
}
