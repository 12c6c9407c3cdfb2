// Command customstore plugs a profile store written from scratch (store.go)
// into a privacy.Controller, beside the in-memory defaults for the other
// backends, collects one person, and erases them.
//
// It is a guide for adapter authors: store.go implements profile.Store with
// every point of the contract marked, and customstore_test.go proves it with
// the conformance suite of package storetest, declaring the backends it does
// not provide so that their checks are skipped with a reason.
//
//	go run ./examples/customstore
//	go test -race ./examples/customstore
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer) error {
	// The custom store for profiles; every other backend is the in-memory
	// default that privacy.New fills in. A recorder stands in for a downstream
	// tool that must hear of the erasure (Art. 19).
	store := NewStore()
	crm := destination.NewRecorder("crm")
	c, err := privacy.New(privacy.WithProfiles(store), privacy.WithDestinations(crm))
	if err != nil {
		return err
	}
	defer c.Close()
	// The work a host runs in the background: recovery (and taking over the
	// requests of hosts that stopped), audience refresh, overdue reports. To
	// shut down: stop the intake, cancel Run, Flush, then Close.
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- c.Run(runCtx) }()
	defer func() { stopRun(); <-ran }()

	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	for _, m := range []privacy.Message{
		privacy.Track{MessageID: "m1", AnonymousID: "laptop-7f3a", Event: "Product Viewed",
			Properties: map[string]any{"sku": "TENT-2P"}, Timestamp: ts},
		privacy.Identify{MessageID: "m2", AnonymousID: "laptop-7f3a", UserID: "u-1001",
			Traits: map[string]any{"email": "ada@example.com", "plan": "pro"}, Timestamp: ts.Add(5 * time.Minute)},
		privacy.Track{MessageID: "m3", UserID: "u-1001", Event: "Order Completed",
			Properties: map[string]any{"total": 249}, Timestamp: ts.Add(10 * time.Minute)},
	} {
		if err := c.Collect(ctx, m); err != nil {
			return fmt.Errorf("collecting: %w", err)
		}
	}
	fmt.Fprintln(w, "custom store after collection:", store)

	ada := identity.ID{Type: "email", Value: "ada@example.com"}
	p, err := c.Profile(ctx, ada)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "profile: plan %v, %d identifiers, version %d\n", p.Traits["plan"].Value, len(p.ExternalIDs), p.Metadata.Version)
	page, err := c.Events(ctx, ada, profile.EventQuery{Sort: profile.Asc})
	if err != nil {
		return err
	}
	for _, e := range page.Events {
		fmt.Fprintln(w, "event:", e.Name)
	}

	// Erasure deletes the person from every backend in one decision, the
	// custom store included, and forwards the deletion downstream.
	r, err := c.Erase(ctx, ada)
	if err != nil {
		return fmt.Errorf("erasing: %w", err)
	}
	if err := c.Flush(ctx); err != nil {
		return err
	}
	if r, err = c.Status(ctx, r.ID); err != nil {
		return err
	}
	fmt.Fprintln(w, "erasure:", r.Status)
	for _, o := range r.Backends {
		fmt.Fprintln(w, "  backend", o.Name, o.Status)
	}
	for _, o := range r.Destinations {
		fmt.Fprintln(w, "  destination", o.Name, o.Status)
	}
	fmt.Fprintln(w, "custom store after erasure:", store)
	_, err = c.Profile(ctx, ada)
	fmt.Fprintln(w, "profile found:", !errors.Is(err, privacy.ErrNotFound))
	for _, d := range crm.Deletions() {
		fmt.Fprintln(w, "identifiers forwarded to", crm.Name()+":", len(d.IDs))
	}
	return nil
}
