package privacy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
)

var (
	exampleTime = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	ada         = identity.ID{Type: "user_id", Value: "ada"}
)

// exampleController is a Controller on the in-memory defaults holding
// ada, with a recorder as its one destination.
func exampleController() (*privacy.Controller, *destination.Recorder) {
	crm := destination.NewRecorder("crm")
	c, err := privacy.New(privacy.WithDestinations(crm))
	if err != nil {
		panic(err)
	}
	err = c.Collect(context.Background(), privacy.Identify{MessageID: "m1", UserID: "ada",
		Traits: map[string]any{"email": "ada@example.com", "plan": "pro"}, Timestamp: exampleTime})
	if err != nil {
		panic(err)
	}
	return c, crm
}

// New without options keeps every backend in memory: nothing to set up.
// Durable backends (sqlstore) need WithBackends and the same WithKey at
// every start.
func ExampleNew() {
	c, err := privacy.New()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	err = c.Collect(context.Background(), privacy.Track{UserID: "ada", Event: "Signed Up", Timestamp: exampleTime})
	fmt.Println(err, c.Stats().Collected)
	// Output:
	// <nil> 1
}

// A rectification corrects traits here and at every destination; the
// receipt's ProfileVersion appears in the metadata once it is processed.
func ExampleController_Rectify() {
	ctx := context.Background()
	c, crm := exampleController()
	defer c.Close()

	r, err := c.Rectify(ctx, ada, map[string]any{"plan": "team", "email": nil})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = c.Flush(ctx) // the destinations told, the request ends
	r, _ = c.Status(ctx, r.ID)
	p, _ := c.Profile(ctx, ada)
	fmt.Println(r.Type, r.Status, p.Traits["plan"].Value, p.Traits["email"].Value == nil)
	fmt.Println("confirmed:", p.Metadata.Version == r.ProfileVersion)
	fmt.Println("sent to crm:", len(crm.Messages()) > 0)
	// Output:
	// RECTIFY FINISHED team true
	// confirmed: true
	// sent to crm: true
}

// Apply takes any request type, Segment's and RECTIFY, for up to
// MaxSubjects people at once; bad input gets an INVALID receipt and
// changes nothing.
func ExampleController_Apply() {
	ctx := context.Background()
	c, _ := exampleController()
	defer c.Close()

	r, err := c.Apply(ctx, privacy.Request{Type: privacy.SuppressOnly, Subjects: []identity.ID{{Type: "email", Value: "Ada@Example.com"}}})
	fmt.Println(r.Type, r.Status, err)
	err = c.Collect(ctx, privacy.Track{UserID: "ada", Event: "Came Back", Timestamp: exampleTime.Add(time.Hour)})
	fmt.Println(errors.Is(err, privacy.ErrSuppressed))

	r, err = c.Apply(ctx, privacy.Request{Type: "ERASE", Subjects: []identity.ID{ada}})
	fmt.Println(r.Status, errors.Is(err, privacy.ErrInvalid))
	// Output:
	// SUPPRESS_ONLY FINISHED <nil>
	// true
	// INVALID true
}

// Access gathers everything held about the person in one package.
func ExampleController_Access() {
	ctx := context.Background()
	c, _ := exampleController()
	defer c.Close()

	pkg, err := c.Access(ctx, identity.ID{Type: "email", Value: "ada@example.com"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(pkg.Profile.ExternalIDs), pkg.Profile.Traits["plan"].Value, "earlier requests:", len(pkg.Requests))
	r, _ := c.Status(ctx, pkg.RequestID)
	fmt.Println(r.Type, r.Status)
	// Output:
	// 2 pro earlier requests: 0
	// ACCESS FINISHED
}

// Export streams the same package in a portable format; an unknown person
// fails with ErrNotFound before anything is written, so a host can still
// answer with an error (an HTTP 404, say).
func ExampleController_Export() {
	ctx := context.Background()
	c, _ := exampleController()
	defer c.Close()

	var buf bytes.Buffer
	r, err := c.Export(ctx, ada, &buf, export.NDJSON)
	fmt.Println(r.Status, err, bytes.Count(buf.Bytes(), []byte("\n")) > 3)
	pkg, err := export.Read(&buf, export.NDJSON)
	fmt.Println(err, pkg.Profile.Traits["email"].Value)

	buf.Reset()
	_, err = c.Export(ctx, identity.ID{Type: "user_id", Value: "nobody"}, &buf, export.JSON)
	fmt.Println(errors.Is(err, privacy.ErrNotFound), buf.Len())
	// Output:
	// FINISHED <nil> true
	// <nil> ada@example.com
	// true 0
}

// Status reads a receipt by id; Requests lists them, newest first, by type
// and status.
func ExampleController_Requests() {
	ctx := context.Background()
	c, _ := exampleController()
	defer c.Close()
	_, _ = c.Suppress(ctx, ada)
	_, _ = c.Unsuppress(ctx, ada)

	page, err := c.Requests(ctx, privacy.RequestFilter{Types: []privacy.RequestType{privacy.SuppressOnly, privacy.Unsuppress}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range page.Receipts {
		st, _ := c.Status(ctx, r.ID)
		fmt.Println(st.Type, st.Status)
	}
	_, err = c.Status(ctx, "req_unknown")
	fmt.Println(errors.Is(err, privacy.ErrNotFound))
	// Output:
	// UNSUPPRESS FINISHED
	// SUPPRESS_ONLY FINISHED
	// true
}

// Flush waits for what destinations are owed: a host calls it when it
// shuts down, after stopping its intake and Run, before Close.
func ExampleController_Flush() {
	ctx := context.Background()
	c, crm := exampleController()
	defer c.Close()

	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := c.Flush(fctx)
	fmt.Println(err, len(crm.Messages()))
	stats, _ := c.DeliveryStats(ctx)
	fmt.Println(stats["crm"].Delivered, stats["crm"].Pending)
	// Output:
	// <nil> 1
	// 1 0
}

// Recover completes what a crash left unfinished; Run calls it at start and
// on its schedule, so a host rarely calls it itself.
func ExampleController_Recover() {
	ctx := context.Background()
	c, _ := exampleController()
	defer c.Close()

	n, err := c.Recover(ctx) // nothing was left unfinished here
	fmt.Println(n, err)
	// Output:
	// 0 <nil>
}
