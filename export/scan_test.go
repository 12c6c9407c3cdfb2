package export_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/profile"
)

// TestScannerReadsWhatReadReads: the records a Scanner returns, added up,
// are the Package Read returns, and Read refuses what Scan refuses.
func TestScannerReadsWhatReadReads(t *testing.T) {
	data := write(t, export.NDJSON, richPackage())
	want, err := export.Read(bytes.NewReader(data), export.NDJSON)
	if err != nil {
		t.Fatal(err)
	}
	got := &export.Package{Schema: export.SchemaVersion}
	s := export.NewScanner(bytes.NewReader(data), 0)
	kinds := map[export.RecordKind]int{}
	for s.Scan() {
		r := s.Record()
		kinds[r.Kind]++
		switch r.Kind {
		case export.KindHeader:
			got.GeneratedAt, got.RequestID, got.Profile.ID = r.Header.GeneratedAt, r.Header.RequestID, r.Header.ProfileID
			got.Profile.Metadata, got.Suppression = r.Header.Metadata, r.Header.Suppression
		case export.KindIdentifier:
			got.Profile.ExternalIDs = append(got.Profile.ExternalIDs, r.Identifier)
		case export.KindTrait:
			if got.Profile.Traits == nil {
				got.Profile.Traits = map[string]profile.Trait{}
			}
			got.Profile.Traits[r.TraitKey] = r.Trait
		case export.KindEvent:
			got.Events = append(got.Events, r.Event)
		case export.KindAudience:
			got.Audiences = append(got.Audiences, r.Audience)
		case export.KindRequest:
			got.Requests = append(got.Requests, r.Request)
		case export.KindRecipient:
			got.Recipients = append(got.Recipients, r.Recipient)
		case export.KindConsentChange:
			got.ConsentHistory = append(got.ConsentHistory, r.ConsentChange)
		case export.KindAccount:
			got.Accounts = append(got.Accounts, r.Account)
		default:
			t.Errorf("record of kind %q", r.Kind)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("the Scanner's records differ from Read's package (-Read +Scanner):\n%s", d)
	}
	if kinds[export.KindHeader] != 1 || kinds[export.KindEvent] != len(want.Events) ||
		kinds[export.KindConsentChange] != len(richPackage().ConsentHistory) || len(want.ConsentHistory) == 0 ||
		kinds[export.KindAccount] != len(richPackage().Accounts) || len(want.Accounts) == 0 {
		t.Errorf("kinds read: %v", kinds)
	}
	// Truncated: the Scanner returns the records, then fails as Read does.
	cut := data[:bytes.LastIndexByte(data[:len(data)-1], '\n')+1]
	s = export.NewScanner(bytes.NewReader(cut), 0)
	for s.Scan() {
	}
	_, rerr := export.Read(bytes.NewReader(cut), export.NDJSON)
	if !errors.Is(s.Err(), export.ErrInvalid) || !strings.Contains(s.Err().Error(), "truncated") || rerr == nil || rerr.Error() != s.Err().Error() {
		t.Errorf("truncated: Scanner %v, Read %v; want both to say it is truncated", s.Err(), rerr)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// endless is a record that never ends: a line without a newline.
type endless struct{ started bool }

func (e *endless) Read(p []byte) (int, error) {
	if !e.started {
		e.started = true
		return copy(p, `{"kind":"event","message_id":"`), nil
	}
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// TestScannerRefusesALongRecordBeforeDecodingIt: a line longer than the
// bound is refused once that many bytes are read, not after it ends (an
// endless one never does), and not decoded.
func TestScannerRefusesALongRecordBeforeDecodingIt(t *testing.T) {
	const max = 1 << 20
	src := &countingReader{r: io.MultiReader(strings.NewReader(`{"kind":"header","schema":"`+export.SchemaVersion+`"}`+"\n"), &endless{})}
	s := export.NewScanner(src, max)
	for s.Scan() {
	}
	if err := s.Err(); !errors.Is(err, export.ErrTooLarge) || !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("an endless record: Err = %v; want ErrTooLarge naming line 2", err)
	}
	if src.n > max+256<<10 {
		t.Errorf("read %d bytes of an endless record with a bound of %d", src.n, max)
	}
	// Read refuses a record over DefaultMaxRecord alike.
	long := `{"kind":"header","schema":"` + export.SchemaVersion + `"}` + "\n" + `{"kind":"audience","key":"` + strings.Repeat("k", export.DefaultMaxRecord) + `"}` + "\n"
	if _, err := export.Read(strings.NewReader(long), export.NDJSON); !errors.Is(err, export.ErrTooLarge) {
		t.Errorf("Read of a record over DefaultMaxRecord = %v; want ErrTooLarge", err)
	}
}

// TestScannerMemoryIsBoundedByTheLargestRecord: a Scanner reading an export
// of 24 MB, streamed as it is written, holds no more than a few records at
// a time. (Read held about 35 times its input: 2 GB for 64 MB.)
func TestScannerMemoryIsBoundedByTheLargestRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads 24 MB")
	}
	const events = 40_000
	pr, pw := io.Pipe()
	go func() {
		w, err := export.NewWriter(pw, export.NDJSON)
		if err == nil {
			err = w.WriteHeader(header)
		}
		pad := strings.Repeat("p", 400)
		for i := 0; i < events && err == nil; i++ {
			err = w.WriteEvent(profile.Event{MessageID: "m" + strings.Repeat("0", 8), Name: "Order Completed", Timestamp: t0.Add(time.Duration(i) * time.Second),
				Properties: map[string]any{"pad": pad, "n": float64(i)}})
		}
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
	}()
	src := &countingReader{r: pr}
	s := export.NewScanner(src, 0)
	var base, peak uint64
	var ms runtime.MemStats
	n := 0
	for s.Scan() {
		if n++; n%4000 == 1 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if base == 0 {
				base = ms.HeapAlloc
			}
			peak = max(peak, ms.HeapAlloc)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if n != events+1 {
		t.Fatalf("scanned %d records; want %d", n, events+1)
	}
	if src.n < 20<<20 {
		t.Fatalf("the export is %d bytes; want over 20 MB to tell", src.n)
	}
	if grew := int64(peak) - int64(base); grew > 4<<20 {
		t.Errorf("the live heap grew by %d bytes reading %d bytes; want it bounded by a few records, not the export", grew, src.n)
	}
}
