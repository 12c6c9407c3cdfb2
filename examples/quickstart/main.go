// Command quickstart runs gdprkit/privacy on its in-memory defaults: one person
// browses anonymously on a laptop, signs up, then uses the app on a phone; the
// library resolves all of it into one profile and prints it.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer) error {
	// Every backend in memory, zero setup; a recorder stands in for a downstream
	// tool (a CRM, an ad platform) that receives every update after it commits.
	crm := destination.NewRecorder("crm")
	c, err := privacy.New(privacy.WithDestinations(crm))
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
	// An audience, kept current as messages arrive.
	if err := c.DefineAudience(ctx, audience.Definition{Key: "big_spenders",
		Query: `trait('plan') = 'pro' and event('Order Completed').where(property('total') >= 100).within(30 days).count() >= 1`}); err != nil {
		return err
	}

	t0 := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour) // a morning's browsing, three hours ago
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	messages := []privacy.Message{
		// Laptop, before signing up: only an anonymous id.
		privacy.Track{MessageID: "m1", AnonymousID: "laptop-7f3a", Event: "Product Viewed",
			Properties: map[string]any{"sku": "TENT-2P", "price": 249}, Timestamp: at(0)},
		// Signing up on the laptop links the anonymous id to a user id; the email
		// trait becomes an identifier too.
		privacy.Identify{MessageID: "m2", AnonymousID: "laptop-7f3a", UserID: "u-1001",
			Traits: map[string]any{"email": "Ada@Example.com", "name": "Ada", "plan": "free"}, Timestamp: at(5)},
		// Phone, before logging in: a second anonymous profile.
		privacy.Track{MessageID: "m3", AnonymousID: "phone-91bc", Event: "App Opened", Timestamp: at(60)},
		// Logging in on the phone: both devices' profiles merge into one.
		privacy.Identify{MessageID: "m4", AnonymousID: "phone-91bc", UserID: "u-1001",
			Traits: map[string]any{"plan": "pro"}, Timestamp: at(61)},
		privacy.Track{MessageID: "m5", UserID: "u-1001", Event: "Order Completed",
			Properties: map[string]any{"total": 249, "currency": "EUR"}, Timestamp: at(70)},
		// A retried delivery of m5: stored once.
		privacy.Track{MessageID: "m5", UserID: "u-1001", Event: "Order Completed",
			Properties: map[string]any{"total": 249, "currency": "EUR"}, Timestamp: at(70)},
	}
	for _, m := range messages {
		if err := c.Collect(ctx, m); err != nil {
			return err
		}
	}
	// Bad input is refused with the field named, and nothing is stored.
	err = c.Collect(ctx, privacy.Track{AnonymousID: "anonymous", Event: "Clicked", Timestamp: at(80)})
	fmt.Fprintf(w, "refused: %v\n\n", err)

	// Any identifier finds the person: here the email, lower-cased.
	p, err := c.Profile(ctx, identity.ID{Type: "email", Value: "ada@example.com"})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "one profile, version %d, created %s\n", p.Metadata.Version, p.Metadata.CreatedAt.Format(time.RFC3339))
	fmt.Fprintln(w, "identifiers:")
	for _, e := range p.ExternalIDs {
		fmt.Fprintf(w, "  %-28s first seen in %s\n", e.ID, e.FirstMessageID)
	}
	fmt.Fprintln(w, "traits:")
	keys := make([]string, 0, len(p.Traits))
	for k := range p.Traits {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		t := p.Traits[k]
		fmt.Fprintf(w, "  %-6s = %-18v (%s, %s)\n", k, t.Value, t.Source, t.UpdatedAt.Format("15:04"))
	}
	page, err := c.Events(ctx, identity.ID{Type: "user_id", Value: "u-1001"}, profile.EventQuery{Sort: profile.Asc})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "events:")
	for _, e := range page.Events {
		fmt.Fprintf(w, "  %s  %-16s %v\n", e.Timestamp.Format("15:04"), e.Name, formatProps(e.Properties))
	}
	members, err := c.Members(ctx, "big_spenders")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "audience big_spenders: %d member(s), this profile among them: %v\n", len(members), slices.Contains(members, p.ID))

	// Destinations hear about each change after it commits; Flush waits for them.
	if err := c.Flush(ctx); err != nil {
		return err
	}
	fmt.Fprintln(w, "the crm destination received:")
	for _, m := range crm.Messages() {
		fields := m.Properties
		if m.Type == destination.TypeIdentify {
			fields = m.Traits
		}
		fmt.Fprintf(w, "  %-8s %-16s %s\n", m.Type, m.Event, formatProps(fields))
	}
	s := c.Stats()
	fmt.Fprintf(w, "\ncollected %d, duplicates %d, refused %d\n", s.Collected, s.Duplicates, s.Refused)

	return rights(ctx, w, c, crm, at(90))
}

// rights exercises the four rights on the same person, each with its receipt.
func rights(ctx context.Context, w io.Writer, c *privacy.Controller, crm *destination.Recorder, later time.Time) error {
	ada := identity.ID{Type: "email", Value: "ada@example.com"}
	fmt.Fprintln(w, "\nthe rights, each with its receipt:")

	// Rectification: corrected here and downstream, confirmable by version.
	r, err := c.Rectify(ctx, ada, map[string]any{"name": "Ada Lovelace", "plan": "free"})
	if err != nil {
		return err
	}
	meta, err := c.Metadata(ctx, ada)
	if err != nil {
		return err
	}
	if err := c.Flush(ctx); err != nil { // the corrected traits reach the crm
		return err
	}
	if r, err = c.Status(ctx, r.ID); err != nil {
		return err
	}
	printReceipt(w, r)
	fmt.Fprintf(w, "    profile version is now %d: the rectification is processed\n", meta.Version)

	// Objection: collection stops at once, for every identifier of the person.
	if r, err = c.Suppress(ctx, ada); err != nil {
		return err
	}
	printReceipt(w, r)
	err = c.Collect(ctx, privacy.Track{AnonymousID: "phone-91bc", Event: "App Opened", Timestamp: later})
	fmt.Fprintf(w, "    a message from the phone: %v\n", err)
	if r, err = c.Unsuppress(ctx, ada); err != nil {
		return err
	}
	printReceipt(w, r)

	// Access and portability: everything held about the person, in one
	// structured export (JSON, NDJSON or a zip of CSV files).
	var out bytes.Buffer
	if r, err = c.Export(ctx, ada, &out, export.NDJSON); err != nil {
		return err
	}
	printReceipt(w, r)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	fmt.Fprintf(w, "    NDJSON export: %d records, %d bytes; the first ones:\n", len(lines), out.Len())
	for _, line := range lines[:min(3, len(lines))] {
		if len(line) > 110 {
			line = line[:107] + "..."
		}
		fmt.Fprintf(w, "      %s\n", line)
	}

	// Erasure: everywhere, and forwarded to every destination.
	if r, err = c.Erase(ctx, ada); err != nil {
		return err
	}
	if err := c.Flush(ctx); err != nil {
		return err
	}
	if r, err = c.Status(ctx, r.ID); err != nil {
		return err
	}
	printReceipt(w, r)
	_, err = c.Profile(ctx, ada)
	fmt.Fprintf(w, "    the profile now: %v\n", err)
	for _, d := range crm.Deletions() {
		fmt.Fprintf(w, "    the crm was asked to delete %d identifiers (request %s)\n", len(d.IDs), d.RequestID)
	}
	n, err := c.VerifyAudit(ctx)
	fmt.Fprintf(w, "audit log: %d records, chain verified: %v\n", n, err == nil)
	return err
}

func printReceipt(w io.Writer, r *privacy.Receipt) {
	dests := []string{}
	if len(r.Destinations) == 0 {
		dests = append(dests, "none")
	}
	for _, o := range r.Destinations {
		dests = append(dests, o.Name+"="+string(o.Status))
	}
	fmt.Fprintf(w, "  %-13s %-8s due %s  destinations: %s\n", r.Type, r.Status, r.Due.Format("2006-01-02"), strings.Join(dests, ","))
}

func formatProps(props map[string]any) string {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, props[k])
	}
	return strings.Join(parts, " ")
}
