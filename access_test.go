package privacy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// richPerson collects a person with two devices, traits, n events, an audience
// and a rectification, and returns the environment.
func richPerson(t *testing.T, n int) *env {
	t.Helper()
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(rec), fastDelivery())
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	person(t, e, "ada")
	for i := range n {
		e.collect(t, privacy.Track{MessageID: fmt.Sprint("ev-", i), UserID: "ada", Event: "Order Completed",
			Properties: map[string]any{"total": float64(i), "items": []any{"a", map[string]any{"sku": "x"}}}, Timestamp: at(10 + i)})
	}
	if _, err := e.c.Rectify(context.Background(), user("ada"), map[string]any{"email": "ada@corrected.example"}); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	return e
}

func TestAccessReturnsEverythingHeld(t *testing.T) {
	ctx := context.Background()
	e := richPerson(t, 2*1000+17) // more than two pages of events
	pkg, err := e.c.Access(ctx, identity.ID{Type: "anonymous_id", Value: "ada-phone"})
	if err != nil {
		t.Fatal(err)
	}
	if pkg.Schema != export.SchemaVersion || pkg.RequestID == "" {
		t.Fatalf("schema %q, request %q", pkg.Schema, pkg.RequestID)
	}
	p := e.profile(t, user("ada"))
	if pkg.Profile.ID != p.ID {
		t.Fatalf("profile %s, want %s", pkg.Profile.ID, p.ID)
	}
	if diff := cmp.Diff(p.ExternalIDs, pkg.Profile.ExternalIDs); diff != "" || len(p.ExternalIDs) != 4 {
		t.Errorf("identifiers (-profile +export), want all 4:\n%s", diff)
	}
	if diff := cmp.Diff(p.Traits, pkg.Profile.Traits); diff != "" {
		t.Errorf("traits (-profile +export):\n%s", diff)
	}
	if got := pkg.Profile.Traits["email"]; got.Value != "ada@corrected.example" || got.Source != "rectification" {
		t.Errorf("rectified trait = %+v", got)
	}
	if len(pkg.Events) != 2+2017 {
		t.Fatalf("%d events, want every one of %d", len(pkg.Events), 2+2017)
	}
	for i := 1; i < len(pkg.Events); i++ {
		if pkg.Events[i].Timestamp.Before(pkg.Events[i-1].Timestamp) {
			t.Fatalf("events out of order at %d", i)
		}
	}
	if diff := cmp.Diff([]string{"pro"}, pkg.Audiences); diff != "" {
		t.Errorf("audiences (-want +got):\n%s", diff)
	}
	if pkg.Suppression.Suppressed {
		t.Error("suppressed, but nobody objected")
	}
	if len(pkg.Requests) != 1 || pkg.Requests[0].Type != string(privacy.Rectify) || pkg.Requests[0].Status != string(privacy.Finished) {
		t.Errorf("past requests = %+v, want the rectification", pkg.Requests)
	}
	if len(pkg.Recipients) != 1 || pkg.Recipients[0].Name != "crm" || pkg.Recipients[0].FirstSent.IsZero() {
		t.Errorf("recipients = %+v, want crm", pkg.Recipients)
	}
	r, err := e.c.Status(ctx, pkg.RequestID)
	if err != nil || r.Type != privacy.Access || r.Status != privacy.Finished || r.Finished.IsZero() {
		t.Fatalf("receipt %+v, %v: want a FINISHED ACCESS request", r, err)
	}
}

func TestExportRoundTripsInEveryFormat(t *testing.T) {
	ctx := context.Background()
	e := richPerson(t, 50)
	if _, err := e.c.Suppress(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	want, err := e.c.Access(ctx, user("ada")) // exporting a suppressed person works
	if err != nil {
		t.Fatal(err)
	}
	if !want.Suppression.Suppressed {
		t.Fatal("the export does not say the person objected")
	}
	for _, f := range []export.Format{export.JSON, export.NDJSON, export.CSV} {
		t.Run(f.String(), func(t *testing.T) {
			var buf bytes.Buffer
			r, err := e.c.Export(ctx, user("ada"), &buf, f)
			if err != nil || r.Status != privacy.Finished || r.Type != privacy.Access {
				t.Fatalf("Export: %+v, %v", r, err)
			}
			got, err := export.Read(&buf, f)
			if err != nil {
				t.Fatal(err)
			}
			// Each export is its own request; and the later ones list the earlier ones.
			ignore := cmpopts.IgnoreFields(export.Package{}, "RequestID", "GeneratedAt", "Requests")
			if diff := cmp.Diff(want, got, ignore, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s export differs from Access (-access +export):\n%s", f, diff)
			}
			if got.RequestID != r.ID {
				t.Errorf("export names request %s, receipt is %s", got.RequestID, r.ID)
			}
		})
	}
}

func TestAccessOfUnknownOrErasedPerson(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if _, err := e.c.Access(ctx, user("nobody")); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("Access(unknown) = %v, want ErrNotFound", err)
	}
	person(t, e, "ada")
	if _, err := e.c.Erase(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	r, err := e.c.Export(ctx, user("ada"), &buf, export.NDJSON)
	if !errors.Is(err, privacy.ErrNotFound) || buf.Len() != 0 {
		t.Fatalf("Export(erased) = %v with %d bytes written, want ErrNotFound and nothing", err, buf.Len())
	}
	if r == nil || r.Status != privacy.Finished {
		t.Fatalf("receipt of an access to nobody = %+v, want FINISHED with nothing held", r)
	}
	if _, err := e.c.Access(ctx, identity.ID{Type: "", Value: "x"}); !errors.Is(err, privacy.ErrInvalid) {
		t.Fatalf("Access(malformed) = %v, want ErrInvalid", err)
	}
	if _, err := e.c.Export(ctx, user("ada"), &buf, export.Format(99)); !errors.Is(err, privacy.ErrInvalid) {
		t.Fatalf("Export(unknown format) = %v, want ErrInvalid", err)
	}
}

// failingWriter fails once more than limit bytes were written to it.
type failingWriter struct {
	limit, n int
}

var errDiskFull error = syscall.ENOSPC

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.limit {
		return 0, errDiskFull
	}
	w.n += len(p)
	return len(p), nil
}

func TestExportFailuresChangeNothing(t *testing.T) {
	ctx := context.Background()
	e := richPerson(t, 3000)
	before := e.profile(t, user("ada"))

	r, err := e.c.Export(ctx, user("ada"), &failingWriter{limit: 64 << 10}, export.NDJSON)
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Export to a failing writer = %v, want its error", err)
	}
	if r == nil || r.Status != privacy.Failed || !strings.Contains(r.Reason, "writing the export") || !strings.Contains(r.Reason, "no space left on device") {
		t.Fatalf("receipt = %+v, want FAILED naming the writer's error by its kind", r)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancelling := &cancellingWriter{cancel: cancel, after: 32 << 10}
	r, err = e.c.Export(cctx, user("ada"), cancelling, export.JSON)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Export with a context cancelled half-way = %v, want context.Canceled", err)
	}
	if r == nil || r.Status != privacy.Failed {
		t.Fatalf("receipt = %+v, want FAILED", r)
	}
	after := e.profile(t, user("ada"))
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("a failed export changed the profile (-before +after):\n%s", diff)
	}
	// Collection goes on: the person's lock was let go.
	e.collect(t, privacy.Track{MessageID: "after", UserID: "ada", Event: "E", Timestamp: at(99999)})
}

// cancellingWriter cancels the context once after bytes were written.
type cancellingWriter struct {
	cancel context.CancelFunc
	after  int
	n      int
}

func (w *cancellingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	if w.n > w.after {
		w.cancel()
	}
	return len(p), nil
}

// blockingWriter blocks its first write until released, so a test can act
// while an export is half-way.
type blockingWriter struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() {
		close(w.started)
		<-w.release
	})
	return w.buf.Write(p)
}

// TestExportIsASnapshot checks that collection about the person waits for an
// export under way, so the export is not torn, and goes on afterwards.
func TestExportIsASnapshot(t *testing.T) {
	ctx := context.Background()
	e := richPerson(t, 5000)
	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := e.c.Export(ctx, user("ada"), w, export.NDJSON)
		done <- err
	}()
	<-w.started
	collected := make(chan error, 1)
	go func() {
		collected <- e.c.Collect(ctx, privacy.Track{MessageID: "during", UserID: "ada", Event: "E", Timestamp: at(99999)})
	}()
	select {
	case err := <-collected:
		t.Fatalf("a message about the person was collected during the export: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(w.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-collected; err != nil {
		t.Fatal(err)
	}
	got, err := export.Read(&w.buf, export.NDJSON)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != 2+5000 {
		t.Fatalf("the export has %d events, want the %d there were when it began", len(got.Events), 2+5000)
	}
}

// TestRecoverFailsAnInterruptedExport checks that an ACCESS request a crash
// left running ends FAILED, so the person knows to ask again.
func TestRecoverFailsAnInterruptedExport(t *testing.T) {
	ctx := context.Background()
	j := journal.NewMemJournal()
	e := newEnv(t, privacy.WithJournal(j))
	person(t, e, "ada")
	if err := j.Put(ctx, &journal.Entry{ID: "req_interrupted", Type: privacy.Access, Status: privacy.Running,
		Received: t0, Due: t0.AddDate(0, 1, 0), Subjects: []identity.ID{user("ada")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := e.c.Status(ctx, "req_interrupted")
	if err != nil || r.Status != privacy.Failed || !strings.Contains(r.Reason, "interrupted") {
		t.Fatalf("receipt %+v, %v: want FAILED, interrupted", r, err)
	}
	got, err := j.Get(ctx, "req_interrupted")
	if err != nil || got.Subjects != nil {
		t.Fatalf("the finished entry keeps clear subjects: %+v, %v", got, err)
	}
}
