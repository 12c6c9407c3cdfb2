package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
)

var auditChecks = []check[audit.Log]{
	{"Empty", auditEmpty},
	{"ChainAppendAndVerify", auditChainAppendAndVerify},
	{"RecordsPaging", auditRecordsPaging},
	{"AppendRefusesWrongSeq", auditAppendRefusesWrongSeq},
	{"CopyAtBoundary", auditCopyAtBoundary},
	{"ConcurrentAppend", auditConcurrentAppend},
	{"StoresANoteOnce", auditStoresANoteOnce},
}

// auditKey chains the records the checks append.
var auditKey = []byte("storetest-audit-key-0123456789abcdef")

// auditRecord returns the i-th record the checks append; a Chain numbers and
// hashes it.
func auditRecord(i int) audit.Record {
	r := audit.Record{
		// Not truncated: the Chain stores times as a SQL backend keeps them.
		At:          t0.Add(time.Duration(i)*time.Minute + 123456789*time.Nanosecond),
		Action:      []string{"received", "decided", "finished"}[i%3],
		RequestID:   fmt.Sprint("req-", i),
		RequestType: "DELETE_ONLY",
		Status:      "RUNNING",
		Detail:      fmt.Sprintf("détail %d: «quoted»", i),
	}
	switch i % 3 {
	case 1:
		r.Subjects, r.Note = []identity.Hash{hashOf(fmt.Sprint("s", i))}, uint64(i)
	case 2:
		r.Subjects = []identity.Hash{hashOf(fmt.Sprint("s", i)), hashOf(fmt.Sprint("t", i))}
	}
	return r
}

// appendRecords appends records [from, to) through a Chain over log and over
// the in-memory reference, and returns the reference.
func appendRecords(t *testing.T, ctx context.Context, log audit.Log, ref *audit.MemLog, from, to int) {
	t.Helper()
	c, rc := audit.NewChain(log, auditKey), audit.NewChain(ref, auditKey)
	for i := from; i < to; i++ {
		must(t, c.Append(ctx, auditRecord(i)), "Append")
		must(t, rc.Append(ctx, auditRecord(i)), "Append to the reference")
	}
}

func records(t *testing.T, ctx context.Context, log audit.Log, after uint64, limit int) []audit.Record {
	t.Helper()
	rs, err := log.Records(ctx, after, limit)
	must(t, err, "Records")
	return rs
}

func auditEmpty(t *testing.T, e *env, log audit.Log) {
	if r, ok, err := log.Last(e.ctx); err != nil || ok {
		t.Errorf("Last of an empty log = %+v, %v, %v; want ok false", r, ok, err)
	}
	if rs := records(t, e.ctx, log, 0, 10); len(rs) != 0 {
		t.Errorf("Records of an empty log = %+v; want none", rs)
	}
	if n, err := audit.Verify(e.ctx, log, auditKey); err != nil || n != 0 {
		t.Errorf("Verify of an empty log = %d, %v; want 0, nil", n, err)
	}
}

func auditChainAppendAndVerify(t *testing.T, e *env, log audit.Log) {
	ref := audit.NewMemLog()
	appendRecords(t, e.ctx, log, ref, 0, 7)
	want := records(t, e.ctx, ref, 0, 100)
	if d := diff(want, records(t, e.ctx, log, 0, 100)); d != "" {
		t.Errorf("Records, as the reference log has them (-want +got):\n%s", d)
	}
	last, ok, err := log.Last(e.ctx)
	if err != nil || !ok {
		t.Fatalf("Last = %v, %v; want a record", ok, err)
	}
	if d := diff(want[len(want)-1], last); d != "" {
		t.Errorf("Last (-want +got):\n%s", d)
	}
	if n, err := audit.Verify(e.ctx, log, auditKey); err != nil || n != 7 {
		t.Errorf("Verify = %d, %v; want 7, nil: the log must keep records exactly", n, err)
	}
	// More, by a new Chain over the same log (another process, later).
	appendRecords(t, e.ctx, log, ref, 7, 10)
	if n, err := audit.Verify(e.ctx, log, auditKey); err != nil || n != 10 {
		t.Errorf("Verify after a second Chain appended = %d, %v; want 10, nil", n, err)
	}
}

func auditRecordsPaging(t *testing.T, e *env, log audit.Log) {
	ref := audit.NewMemLog()
	appendRecords(t, e.ctx, log, ref, 0, 25)
	for _, tc := range []struct {
		after     uint64
		limit     int
		from, end uint64 // the Seqs wanted: [from, end)
	}{
		{0, 10, 1, 11}, {10, 10, 11, 21}, {20, 10, 21, 26}, {25, 10, 0, 0}, {3, 1, 4, 5}, {0, 25, 1, 26}, {24, 100, 25, 26}, {30, 5, 0, 0},
	} {
		var want []uint64
		for s := tc.from; s < tc.end; s++ {
			want = append(want, s)
		}
		var got []uint64
		for _, r := range records(t, e.ctx, log, tc.after, tc.limit) {
			got = append(got, r.Seq)
		}
		if d := diff(want, got); d != "" {
			t.Errorf("Records(after %d, limit %d) Seqs (-want +got):\n%s", tc.after, tc.limit, d)
		}
	}
}

func auditAppendRefusesWrongSeq(t *testing.T, e *env, log audit.Log) {
	ref := audit.NewMemLog()
	appendRecords(t, e.ctx, log, ref, 0, 2)
	// Two processes that read the same Last would both append Seq 3: the
	// second must be refused, or the chain forks. A gap breaks it too.
	appendRecords(t, e.ctx, log, ref, 2, 3)
	for _, seq := range []uint64{3, 2, 5} {
		r := auditRecord(9)
		r.Seq = seq
		if err := log.Append(e.ctx, r); err == nil {
			t.Errorf("Append of Seq %d after the log's last record 3 = nil; want an error", seq)
		}
	}
	if d := diff(records(t, e.ctx, ref, 0, 100), records(t, e.ctx, log, 0, 100)); d != "" {
		t.Errorf("refused appends changed the log (-want +got):\n%s", d)
	}
	if n, err := audit.Verify(e.ctx, log, auditKey); err != nil || n != 3 {
		t.Errorf("Verify after refused appends = %d, %v; want 3, nil", n, err)
	}
}

// auditStoresANoteOnce: a request's Note is stored once (ErrDuplicate), by
// a writer that read the log's end or one that did not (a concurrent one),
// and the log is unchanged by the refusal; another request's same note, and
// records without a Note, are stored; Records returns the Note.
func auditStoresANoteOnce(t *testing.T, e *env, log audit.Log) {
	ref := audit.NewMemLog()
	appendRecords(t, e.ctx, log, ref, 0, 3) // record 1 has note 1
	again := auditRecord(1)
	if err := audit.NewChain(log, auditKey).Append(e.ctx, again); !errors.Is(err, audit.ErrDuplicate) {
		t.Errorf("appending request req-1's note 1 again through a Chain = %v; want ErrDuplicate", err)
	}
	again.Seq = 3 // as a writer that raced for the same place would
	if err := log.Append(e.ctx, again); err == nil {
		t.Error("appending request req-1's note 1 again at Seq 3 = nil; want an error")
	}
	if d := diff(records(t, e.ctx, ref, 0, 100), records(t, e.ctx, log, 0, 100)); d != "" {
		t.Errorf("a refused note changed the log (-want +got):\n%s", d)
	}
	other, plain := auditRecord(1), auditRecord(0)
	other.RequestID = "req-other"
	c, rc := audit.NewChain(log, auditKey), audit.NewChain(ref, auditKey)
	for _, r := range []audit.Record{other, plain, plain} {
		must(t, c.Append(e.ctx, r), "Append")
		must(t, rc.Append(e.ctx, r), "Append to the reference")
	}
	got := records(t, e.ctx, log, 0, 100)
	if d := diff(records(t, e.ctx, ref, 0, 100), got); d != "" {
		t.Errorf("the log after another request's note and records without one (-want +got):\n%s", d)
	}
	if len(got) < 2 || got[1].Note != 1 {
		t.Errorf("record 2 as stored: %+v; want note 1", got)
	}
	if n, err := audit.Verify(e.ctx, log, auditKey); err != nil || n != 6 {
		t.Errorf("Verify = %d, %v; want 6, nil", n, err)
	}
}

func auditCopyAtBoundary(t *testing.T, e *env, log audit.Log) {
	ref := audit.NewMemLog()
	appendRecords(t, e.ctx, log, ref, 0, 3)
	// Appending directly, then changing what was passed in.
	last, _, err := log.Last(e.ctx)
	must(t, err, "Last")
	r := audit.Record{Seq: last.Seq + 1, At: t0, Action: "direct", Subjects: []identity.Hash{hashOf("x"), hashOf("y")}}
	want := r
	want.Subjects = append([]identity.Hash(nil), r.Subjects...)
	must(t, log.Append(e.ctx, r), "Append")
	r.Subjects[0] = hashOf("scribbled")
	for _, x := range records(t, e.ctx, log, 0, 100) {
		if len(x.Subjects) > 0 {
			x.Subjects[0] = hashOf("scribbled")
		}
	}
	got, ok, err := log.Last(e.ctx)
	if err != nil || !ok {
		t.Fatalf("Last = %v, %v", ok, err)
	}
	if d := diff(want, got); d != "" {
		t.Errorf("changing what was passed to Append or returned by Records changed the log (-want +got):\n%s", d)
	}
	got.Subjects[1] = hashOf("scribbled")
	wantAll := append(records(t, e.ctx, ref, 0, 100), want)
	if d := diff(wantAll, records(t, e.ctx, log, 0, 100)); d != "" {
		t.Errorf("changing what Last returned changed the log (-want +got):\n%s", d)
	}
}

func auditConcurrentAppend(t *testing.T, e *env, log audit.Log) {
	c := audit.NewChain(log, auditKey)
	errs := parallel(writers, func(w int) error {
		for i := 0; i < txsPerWriter; i++ {
			if err := c.Append(e.ctx, auditRecord(w*txsPerWriter+i)); err != nil {
				return err
			}
			if _, _, err := log.Last(e.ctx); err != nil { // readers alongside the writers
				return err
			}
		}
		return nil
	})
	reportAll(t, errs)
	if n, err := audit.Verify(e.ctx, log, auditKey); err != nil || n != concurrentMax {
		t.Errorf("Verify after concurrent appends = %d, %v; want %d, nil", n, err, concurrentMax)
	}
}
