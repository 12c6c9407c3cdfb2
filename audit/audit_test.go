package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gdprkit/privacy/identity"
)

var (
	key      = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
	t0       = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

func hash(b byte) identity.Hash {
	var h identity.Hash
	for i := range h {
		h[i] = b
	}
	return h
}

// record returns the i-th test record, before the chain numbers and hashes it.
func record(i int) Record {
	actions := []string{"received", "decided", "finished"}
	return Record{
		At:          t0.Add(time.Duration(i) * time.Second),
		Action:      actions[i%len(actions)],
		RequestID:   fmt.Sprintf("req_%d", i/3),
		RequestType: "ERASE",
		Status:      "RUNNING",
		Subjects:    []identity.Hash{hash(byte(i)), hash(byte(i + 1))},
		Detail:      fmt.Sprintf("step %d", i),
	}
}

// chained returns a MemLog holding n records appended through a Chain.
func chained(t *testing.T, n int) *MemLog {
	t.Helper()
	l := NewMemLog()
	c := NewChain(l, key)
	for i := range n {
		if err := c.Append(context.Background(), record(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	return l
}

func mustVerify(t *testing.T, l Log, k []byte, want int) {
	t.Helper()
	n, err := Verify(context.Background(), l, k)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if n != want {
		t.Errorf("Verify = %d, want %d", n, want)
	}
}

func TestChainAppend(t *testing.T) {
	ctx := context.Background()
	l := chained(t, 3)
	recs, err := l.Records(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	var prev identity.Hash
	for i, r := range recs {
		seqs = append(seqs, r.Seq)
		// The chain sets Seq and Hash and keeps the rest.
		if diff := cmp.Diff(record(i), r, cmpopts.IgnoreFields(Record{}, "Seq", "Hash")); diff != "" {
			t.Errorf("record %d (-appended +stored):\n%s", i+1, diff)
		}
		if r.Hash.IsZero() || r.Hash == prev {
			t.Errorf("record %d has hash %s", r.Seq, r.Hash)
		}
		if want := link(key, prev, &r); r.Hash != want {
			t.Errorf("record %d: Hash = %s, want the HMAC of the previous hash and content %s", r.Seq, r.Hash, want)
		}
		prev = r.Hash
	}
	if diff := cmp.Diff([]uint64{1, 2, 3}, seqs); diff != "" {
		t.Errorf("Seq (-want +got):\n%s", diff)
	}
	last, ok, err := l.Last(ctx)
	if err != nil || !ok || last.Seq != 3 {
		t.Errorf("Last = %d, %v, %v, want record 3", last.Seq, ok, err)
	}
	mustVerify(t, l, key, 3)
}

// TestChainAppendsANoteOnce checks that a request's Note is appended once,
// by whichever of two chains on one log comes first, that records without a
// Note and other requests' notes are not held back, and that the chain
// verifies with its notes.
func TestChainAppendsANoteOnce(t *testing.T) {
	ctx := context.Background()
	l := NewMemLog()
	mine, other := NewChain(l, key), NewChain(l, key)
	noted := func(req string, note uint64) Record {
		r := record(int(note))
		r.RequestID, r.Note = req, note
		return r
	}
	if err := mine.Append(ctx, noted("req_a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := other.Append(ctx, noted("req_a", 1)); !errors.Is(err, ErrDuplicate) {
		t.Errorf("appending req_a's note 1 again = %v, want ErrDuplicate", err)
	}
	for _, r := range []Record{noted("req_a", 2), noted("req_b", 1), record(7), record(7)} {
		if err := other.Append(ctx, r); err != nil {
			t.Errorf("Append(%s note %d) = %v", r.RequestID, r.Note, err)
		}
	}
	recs, err := l.Records(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s/%d", r.RequestID, r.Note))
	}
	if diff := cmp.Diff([]string{"req_a/1", "req_a/2", "req_b/1", "req_2/0", "req_2/0"}, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	mustVerify(t, l, key, 5)
}

// TestChainIgnoresCallerSeqAndHash checks that the Chain numbers and hashes a
// record whatever Seq and Hash the caller set.
func TestChainIgnoresCallerSeqAndHash(t *testing.T) {
	l := NewMemLog()
	c := NewChain(l, key)
	for i := range 3 {
		r := record(i)
		r.Seq, r.Hash = 99, hash(0xff)
		if err := c.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	mustVerify(t, l, key, 3)
}

// TestChainOwnsItsInputs checks that the Chain and the MemLog keep copies of
// the key and the subjects, so a caller reusing them cannot break the chain.
func TestChainOwnsItsInputs(t *testing.T) {
	ctx := context.Background()
	k := append([]byte(nil), key...)
	l := NewMemLog()
	c := NewChain(l, k)
	r := record(0)
	if err := c.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Subjects[0] = hash(0xee)
	k[0] ^= 0xff
	if err := c.Append(ctx, record(1)); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, l, key, 2)

	// Neither may changing what Records or Last return.
	recs, err := l.Records(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	recs[0].Subjects[0] = hash(0xee)
	last, _, err := l.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last.Subjects[0] = hash(0xee)
	mustVerify(t, l, key, 2)
}

// renumbered numbers recs 1, 2, ... again, as a tamperer hiding a removal,
// insertion or swap would.
func renumbered(recs []Record) []Record {
	for i := range recs {
		recs[i].Seq = uint64(i + 1)
	}
	return recs
}

// rehashedUnder changes recs[from] and re-hashes recs[from:to] under key, each
// chained to the record before it, as a tamperer holding the wrong key would.
// from is at least 1.
func rehashedUnder(key []byte, recs []Record, from, to int) []Record {
	recs[from].Detail = "forged"
	for i := from; i < to; i++ {
		recs[i].Hash = link(key, recs[i-1].Hash, &recs[i])
	}
	return recs
}

func TestVerifyEmpty(t *testing.T) {
	mustVerify(t, NewMemLog(), key, 0)
	mustVerify(t, NewMemLog(), otherKey, 0)
}

// TestVerifyTampered changes the stored records of a valid five-record log and
// checks that Verify names the first record at fault.
func TestVerifyTampered(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(recs []Record) []Record
		// wantN is how many records verify before the fault; wantMsg is part
		// of the error.
		wantN   int
		wantMsg string
	}{
		{
			name:    "Detail changed",
			tamper:  func(recs []Record) []Record { recs[2].Detail = "nothing happened"; return recs },
			wantN:   2,
			wantMsg: "record 3 does not match its chain hash",
		},
		{
			name:    "first record's Detail changed",
			tamper:  func(recs []Record) []Record { recs[0].Detail += "!"; return recs },
			wantN:   0,
			wantMsg: "record 1 does not match its chain hash",
		},
		{
			name:    "Action changed",
			tamper:  func(recs []Record) []Record { recs[4].Action = "received"; return recs },
			wantN:   4,
			wantMsg: "record 5 does not match its chain hash",
		},
		{
			name:    "At changed",
			tamper:  func(recs []Record) []Record { recs[1].At = recs[1].At.Add(time.Nanosecond); return recs },
			wantN:   1,
			wantMsg: "record 2 does not match its chain hash",
		},
		{
			name:    "Subject changed",
			tamper:  func(recs []Record) []Record { recs[1].Subjects[1] = hash(0xee); return recs },
			wantN:   1,
			wantMsg: "record 2 does not match its chain hash",
		},
		{
			name:    "Subject removed",
			tamper:  func(recs []Record) []Record { recs[3].Subjects = recs[3].Subjects[:1]; return recs },
			wantN:   3,
			wantMsg: "record 4 does not match its chain hash",
		},
		{
			name:    "Subjects emptied",
			tamper:  func(recs []Record) []Record { recs[3].Subjects = nil; return recs },
			wantN:   3,
			wantMsg: "record 4 does not match its chain hash",
		},
		{
			name:    "Hash changed",
			tamper:  func(recs []Record) []Record { recs[2].Hash[0] ^= 1; return recs },
			wantN:   2,
			wantMsg: "record 3 does not match its chain hash",
		},
		{
			name:    "middle record removed",
			tamper:  func(recs []Record) []Record { return append(recs[:2], recs[3:]...) },
			wantN:   2,
			wantMsg: "record 4 follows record 2",
		},
		{
			name:    "first record removed",
			tamper:  func(recs []Record) []Record { return recs[1:] },
			wantN:   0,
			wantMsg: "record 2 follows record 0",
		},
		{
			name:    "middle record removed and the rest renumbered",
			tamper:  func(recs []Record) []Record { return renumbered(append(recs[:2], recs[3:]...)) },
			wantN:   2,
			wantMsg: "record 3 does not match its chain hash",
		},
		{
			name: "two records swapped",
			tamper: func(recs []Record) []Record {
				recs[1], recs[2] = recs[2], recs[1]
				return recs
			},
			wantN:   1,
			wantMsg: "record 3 follows record 1",
		},
		{
			name: "two records swapped and renumbered",
			tamper: func(recs []Record) []Record {
				recs[1], recs[2] = recs[2], recs[1]
				return renumbered(recs)
			},
			wantN:   1,
			wantMsg: "record 2 does not match its chain hash",
		},
		{
			name: "record duplicated",
			tamper: func(recs []Record) []Record {
				return append(recs[:3], append([]Record{recs[2]}, recs[3:]...)...)
			},
			wantN:   3,
			wantMsg: "record 3 follows record 3",
		},
		{
			name: "record inserted and the rest renumbered",
			tamper: func(recs []Record) []Record {
				forged := recs[1]
				forged.Detail = "forged"
				return renumbered(append(recs[:2], append([]Record{forged}, recs[2:]...)...))
			},
			wantN:   2,
			wantMsg: "record 3 does not match its chain hash",
		},
		{
			name: "record appended with a forged hash",
			tamper: func(recs []Record) []Record {
				forged := recs[4]
				forged.Seq, forged.Detail = 6, "forged"
				return append(recs, forged)
			},
			wantN:   5,
			wantMsg: "record 6 does not match its chain hash",
		},
		{
			// Each record's hash is valid on its own: only the link to the
			// previous hash shows that it belongs to another chain.
			name: "record taken from another chain under the same key",
			tamper: func(recs []Record) []Record {
				other := NewMemLog()
				c := NewChain(other, key)
				for i := range len(recs) {
					r := record(i)
					r.Detail = "another request"
					if err := c.Append(context.Background(), r); err != nil {
						panic(err)
					}
				}
				recs[2] = other.recs[2]
				return recs
			},
			wantN:   2,
			wantMsg: "record 3 does not match its chain hash",
		},
		{
			name:    "record changed and re-hashed with another key",
			tamper:  func(recs []Record) []Record { return rehashedUnder(otherKey, recs, 2, 3) },
			wantN:   2,
			wantMsg: "record 3 does not match its chain hash",
		},
		{
			name:    "chain re-hashed with another key from a record on",
			tamper:  func(recs []Record) []Record { return rehashedUnder(otherKey, recs, 3, len(recs)) },
			wantN:   3,
			wantMsg: "record 4 does not match its chain hash",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := chained(t, 5)
			mustVerify(t, l, key, 5)
			l.recs = tt.tamper(l.recs)
			n, err := Verify(context.Background(), l, key)
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("Verify = %d, %v, want ErrTampered", n, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Verify error %q does not say %q", err, tt.wantMsg)
			}
			if n != tt.wantN {
				t.Errorf("Verify counted %d good records, want %d", n, tt.wantN)
			}
		})
	}
}

// TestVerifyTruncated documents a known limit: removing records from the END
// of the log leaves a valid, shorter chain, because nothing after them links to
// them. A hash chain without an external anchor (the last Seq and Hash kept
// elsewhere, or published) cannot detect truncation; Verify's count is what a
// caller must compare with such an anchor.
func TestVerifyTruncated(t *testing.T) {
	for _, keep := range []int{4, 1, 0} {
		t.Run(fmt.Sprintf("keep %d of 5", keep), func(t *testing.T) {
			l := chained(t, 5)
			l.recs = l.recs[:keep]
			mustVerify(t, l, key, keep)
		})
	}
}

func TestVerifyWrongKey(t *testing.T) {
	l := chained(t, 3)
	for _, k := range [][]byte{otherKey, key[:16], nil} {
		n, err := Verify(context.Background(), l, k)
		if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "record 1 ") {
			t.Errorf("Verify with key %q = %d, %v, want ErrTampered at record 1", k, n, err)
		}
		if n != 0 {
			t.Errorf("Verify with key %q counted %d good records, want 0", k, n)
		}
	}
	mustVerify(t, l, key, 3)
}

// TestVerifyLongChain checks a chain longer than Verify's page of 1000 records,
// intact and with a record tampered with on the second and third pages.
func TestVerifyLongChain(t *testing.T) {
	const n = 2500
	l := chained(t, n)
	mustVerify(t, l, key, n)
	for _, bad := range []int{1000, 1001, 2000, 2500} {
		t.Run(fmt.Sprintf("record %d changed", bad), func(t *testing.T) {
			saved := l.recs[bad-1]
			defer func() { l.recs[bad-1] = saved }()
			l.recs[bad-1].Detail = "forged"
			got, err := Verify(context.Background(), l, key)
			if want := fmt.Sprintf("record %d does not match", bad); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), want) {
				t.Errorf("Verify = %v, want ErrTampered saying %q", err, want)
			}
			if got != bad-1 {
				t.Errorf("Verify counted %d good records, want %d", got, bad-1)
			}
		})
	}
	mustVerify(t, l, key, n)
}

// lyingLog claims a last record that Records never reaches, as a log whose
// tail was hidden would.
type lyingLog struct {
	*MemLog
	last Record
}

func (l lyingLog) Last(ctx context.Context) (Record, bool, error) { return l.last, true, nil }

func TestVerifyLastMismatch(t *testing.T) {
	l := chained(t, 3)
	n, err := Verify(context.Background(), lyingLog{l, Record{Seq: 7}}, key)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "ends at record 7") {
		t.Errorf("Verify = %d, %v, want ErrTampered about the end of the log", n, err)
	}
}

// growingLog appends a record through chain each time Records is called, as
// another process appending while Verify walks the log would.
type growingLog struct {
	*MemLog
	chain *Chain
	t     *testing.T
}

func (l growingLog) Records(ctx context.Context, after uint64, limit int) ([]Record, error) {
	recs, err := l.MemLog.Records(ctx, after, limit)
	if err := l.chain.Append(ctx, record(int(after))); err != nil {
		l.t.Errorf("appending during Verify: %v", err)
	}
	return recs, err
}

// TestVerifyWhileAppending checks that records appended while Verify walks the
// log are no evidence of tampering: Verify checks the log as it was when it
// started.
func TestVerifyWhileAppending(t *testing.T) {
	for _, n := range []int{0, 3, 1000, 1500} {
		t.Run(fmt.Sprintf("%d records", n), func(t *testing.T) {
			l := chained(t, n)
			g := growingLog{MemLog: l, chain: NewChain(l, key), t: t}
			got, err := Verify(context.Background(), g, key)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got < n || got > len(l.recs) {
				t.Errorf("Verify = %d, want between %d and %d", got, n, len(l.recs))
			}
			if len(l.recs) == n {
				t.Fatal("the test appended nothing during Verify")
			}
			mustVerify(t, l, key, len(l.recs))
		})
	}
}

type failingLog struct{ MemLog }

var errBackend = errors.New("backend down")

func (*failingLog) Records(context.Context, uint64, int) ([]Record, error) { return nil, errBackend }
func (*failingLog) Last(context.Context) (Record, bool, error)             { return Record{}, false, errBackend }

func TestBackendErrors(t *testing.T) {
	ctx := context.Background()
	l := &failingLog{}
	if _, err := Verify(ctx, l, key); !errors.Is(err, errBackend) || errors.Is(err, ErrTampered) {
		t.Errorf("Verify = %v, want the backend error and not ErrTampered", err)
	}
	if err := NewChain(l, key).Append(ctx, record(0)); !errors.Is(err, errBackend) {
		t.Errorf("Chain.Append = %v, want the backend error", err)
	}
	if len(l.recs) != 0 {
		t.Errorf("Chain.Append stored %d records despite the error", len(l.recs))
	}
}

// TestMemLogAppendSeq checks that MemLog refuses any record whose Seq is not the
// next one, and stores nothing then.
func TestMemLogAppendSeq(t *testing.T) {
	tests := []struct {
		name string
		have int
		seq  uint64
		ok   bool
	}{
		{"first is 1", 0, 1, true},
		{"first is not 0", 0, 0, false},
		{"first is not 2", 0, 2, false},
		{"next", 2, 3, true},
		{"repeat", 2, 2, false},
		{"earlier", 2, 1, false},
		{"zero", 2, 0, false},
		{"gap", 2, 4, false},
		{"far", 2, 1 << 40, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			l := chained(t, tt.have)
			before := append([]Record(nil), l.recs...)
			r := record(tt.have)
			r.Seq = tt.seq
			err := l.Append(ctx, r)
			if tt.ok != (err == nil) {
				t.Fatalf("Append(Seq %d) after %d records = %v, want ok %v", tt.seq, tt.have, err, tt.ok)
			}
			want := before
			if tt.ok {
				want = append(want, r)
			}
			recs, err := l.Records(ctx, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, recs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("records after Append (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMemLogRecords(t *testing.T) {
	ctx := context.Background()
	l := chained(t, 10)
	tests := []struct {
		after    uint64
		limit    int
		wantSeqs []uint64
	}{
		{0, 0, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{0, 3, []uint64{1, 2, 3}},
		{3, 3, []uint64{4, 5, 6}},
		{8, 5, []uint64{9, 10}},
		{7, -1, []uint64{8, 9, 10}},
		{10, 5, nil},
		{50, 0, nil},
	}
	for _, tt := range tests {
		recs, err := l.Records(ctx, tt.after, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, r := range recs {
			seqs = append(seqs, r.Seq)
		}
		if diff := cmp.Diff(tt.wantSeqs, seqs); diff != "" {
			t.Errorf("Records(%d, %d) (-want +got):\n%s", tt.after, tt.limit, diff)
		}
	}
	if _, ok, err := NewMemLog().Last(ctx); ok || err != nil {
		t.Errorf("Last of an empty log = %v, %v, want false, nil", ok, err)
	}
}

// TestConcurrentAppend appends from many goroutines at once, with readers
// verifying meanwhile, and checks that the chain ends whole. Run with -race.
func TestConcurrentAppend(t *testing.T) {
	const (
		goroutines = 16
		each       = 70 // 1120 records: Verify reads more than one page
	)
	ctx := context.Background()
	l := NewMemLog()
	c := NewChain(l, key)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines+2)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := record(i)
				r.RequestID = fmt.Sprintf("g%d", g)
				if err := c.Append(ctx, r); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				// A reader may see a shorter chain, but always a valid one.
				if _, err := Verify(ctx, l, key); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mustVerify(t, l, key, goroutines*each)
	perGoroutine := map[string]int{}
	for _, r := range l.recs {
		perGoroutine[r.RequestID]++
	}
	for g := range goroutines {
		if got := perGoroutine[fmt.Sprintf("g%d", g)]; got != each {
			t.Errorf("goroutine %d has %d records, want %d", g, got, each)
		}
	}
}

// racingLog is a Log another writer appends to just before each of the first
// `races` appends, as a second process sharing the log would.
type racingLog struct {
	*MemLog
	races int
	other *Chain
}

func (l *racingLog) Append(ctx context.Context, r Record) error {
	if l.races > 0 {
		l.races--
		if err := l.other.Append(ctx, Record{At: r.At, Action: "other process"}); err != nil {
			return err
		}
	}
	return l.MemLog.Append(ctx, r)
}

func TestChainAppendsAgainAfterAnotherWriter(t *testing.T) {
	ctx := context.Background()
	key := []byte("0123456789abcdef0123456789abcdef")
	mem := NewMemLog()
	log := &racingLog{MemLog: mem, races: 3, other: NewChain(mem, key)}
	c := NewChain(log, key)
	if err := c.Append(ctx, Record{At: time.Now(), Action: "mine"}); err != nil {
		t.Fatalf("Append after three conflicts: %v", err)
	}
	recs, err := mem.Records(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 || recs[3].Action != "mine" {
		t.Fatalf("records %+v, want three of the other writer then mine", recs)
	}
	if n, err := Verify(ctx, mem, key); err != nil || n != 4 {
		t.Fatalf("Verify = %d, %v; want 4 records and an intact chain", n, err)
	}
	if err := mem.Append(ctx, Record{Seq: 9}); !errors.Is(err, ErrConflict) {
		t.Fatalf("MemLog.Append out of turn = %v, want ErrConflict", err)
	}
}

// rotatedLog returns a log of before records chained under key, the record
// of a rotation to otherKey, and after records chained under otherKey.
func rotatedLog(t *testing.T, before, after int) *MemLog {
	t.Helper()
	l := chained(t, before)
	ctx := context.Background()
	h, err := identity.NewRotatedHasher(key, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	rot := record(before)
	rot.Action, rot.Detail = ActionKeyRotated, KeyRotatedDetail(h.Check())
	if err := NewChain(l, key).Append(ctx, rot); err != nil {
		t.Fatal(err)
	}
	next := NewChain(l, otherKey)
	for i := range after {
		if err := next.Append(ctx, record(before+1+i)); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func TestVerifyKeysAcrossARotation(t *testing.T) {
	ctx := context.Background()
	l := rotatedLog(t, 4, 3)
	if n, err := VerifyKeys(ctx, l, [][]byte{key, otherKey}); err != nil || n != 8 {
		t.Fatalf("VerifyKeys(old, new) = %d, %v; want 8, nil", n, err)
	}
	third := []byte("a third key, never rotated to...")
	for name, keys := range map[string][][]byte{
		"the old key alone":       {key},
		"the new key alone":       {otherKey},
		"a key never rotated to":  {key, third},
		"one key too many":        {key, otherKey, third},
		"the keys in wrong order": {otherKey, key},
	} {
		_, err := VerifyKeys(ctx, l, keys)
		if !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrTampered) {
			t.Errorf("%s: err = %v, want ErrUnknownKey or ErrTampered", name, err)
		}
	}
	if _, err := Verify(ctx, l, key); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify with the old key: err = %v, want ErrUnknownKey (the log goes on under another)", err)
	}
	if _, err := VerifyKeys(ctx, l, nil); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("VerifyKeys without keys: err = %v, want ErrUnknownKey", err)
	}
	// A change on either side of the rotation is found.
	for _, seq := range []int{2, 5, 7} {
		recs := slices.Clone(l.recs)
		recs[seq-1].Detail = "changed"
		tampered := &MemLog{recs: recs}
		if _, err := VerifyKeys(ctx, tampered, [][]byte{key, otherKey}); !errors.Is(err, ErrTampered) {
			t.Errorf("record %d changed: err = %v, want ErrTampered", seq, err)
		}
	}
}
