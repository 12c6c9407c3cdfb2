package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// TestCLIRetention: `gdprkit retention` is a dry run that counts and
// changes nothing; -apply needs -destinations, then deletes what the policy
// says, journaled as a RETENTION run that status and list show; bad
// periods are usage errors that change nothing.
func TestCLIRetention(t *testing.T) { rdBoth(t, cliRetention) }

func cliRetention(t *testing.T, d database) {
	ctx := context.Background()
	keyBytes, key := newKey(t)
	migrated(t, d, key)
	var offset time.Duration
	// The host's destination is down: every message it owes dies at the
	// first call, a dead letter the CLI's run must drop with its event.
	crm := destination.NewRecorder("crm")
	crm.FailSends(-1)
	host, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes),
		privacy.WithClock(func() time.Time { return time.Now().Add(offset) }),
		privacy.WithDestinations(crm), privacy.WithDelivery(privacy.Delivery{MaxAttempts: 1, Poll: 5 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	for i, age := range []time.Duration{72 * time.Hour, 72 * time.Hour, 0} {
		offset = -age
		for _, u := range []string{"ada", "bob"} {
			if err := host.Collect(ctx, privacy.Track{MessageID: fmt.Sprintf("%s-%d", u, i), UserID: u, Event: "Viewed", Timestamp: time.Now().Add(-age)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	events := func() int {
		n := 0
		for _, u := range []string{"ada", "bob"} {
			page, err := host.Events(ctx, identity.ID{Type: "user_id", Value: u}, profile.EventQuery{})
			if err != nil {
				t.Fatal(err)
			}
			n += len(page.Events)
		}
		return n
	}
	offset = -400 * 24 * time.Hour
	if err := host.Collect(ctx, privacy.Track{MessageID: "cy-0", UserID: "cy", Event: "Viewed", Timestamp: time.Now().Add(offset)}); err != nil {
		t.Fatal(err)
	}
	deadLetters := func() int {
		t.Helper()
		dead, err := host.DeadLetters(ctx, "crm", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(dead)
	}
	for deadline := time.Now().Add(10 * time.Second); deadLetters() != 7; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d dead letters; want the 7 messages' (the destination is down)", deadLetters())
		}
	}
	nd := database{flags: d.flags[:len(d.flags)-2], store: d.store} // without "-destinations none"
	for _, bad := range [][]string{
		{"retention"},                             // no policy
		{"retention", "-events", "soon"},          // not a duration
		{"retention", "-events", "30s"},           // under the minimum
		{"retention", "-source", "web"},           // no period
		{"retention", "-events", "24h", "-apply"}, // no -destinations
	} {
		if code, out, errOut := nd.gdprkit(t, key, bad...); code != exitUsage || !strings.Contains(errOut, "retention") && !strings.Contains(errOut, "WithRetention") {
			t.Errorf("%v: %d %q %q; want a usage error naming retention", bad, code, out, errOut)
		}
	}
	code, out, errOut := nd.gdprkit(t, key, "-json", "retention", "-events", "24h", "-inactive", "8760h")
	var dry retentionJSON
	if code != 0 || json.Unmarshal([]byte(out), &dry) != nil || !dry.DryRun || dry.Events != 5 || dry.Messages != 5 || dry.Pruned != 3 || dry.Erased != 1 || dry.ID != "" {
		t.Fatalf("dry run: %d %s %s; want 5 events of 3 profiles and their 5 dead letters, cy inactive, no run id", code, out, errOut)
	}
	if n := deadLetters(); n != 7 {
		t.Fatalf("after the dry run %d dead letters are held, want all 7", n)
	}
	if n := events(); n != 6 {
		t.Fatalf("after the dry run %d events are stored, want all 6", n)
	}
	code, out, errOut = d.gdprkit(t, key, "-json", "retention", "-events", "24h", "-apply")
	var run retentionJSON
	if code != 0 || json.Unmarshal([]byte(out), &run) != nil || run.DryRun || run.Events != 5 || run.Messages != 5 || run.Status != "FINISHED" || run.ID == "" {
		t.Fatalf("retention -apply: %d %s %s; want 5 events and their 5 dead letters deleted, FINISHED, a run id", code, out, errOut)
	}
	if n := events(); n != 2 {
		t.Errorf("after retention -apply %d events are stored, want the 2 fresh ones", n)
	}
	if n := deadLetters(); n != 2 {
		t.Errorf("after retention -apply %d dead letters are held, want the 2 fresh events'", n)
	}
	code, out, errOut = d.gdprkit(t, key, "-json", "status", run.ID)
	var r wireReceipt
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Type != "RETENTION" || r.Status != "FINISHED" {
		t.Errorf("status of the run: %d %s %s; want a FINISHED RETENTION", code, out, errOut)
	}
	if code, out, errOut = d.gdprkit(t, key, "list", "-type", "retention"); code != 0 || !strings.Contains(out, run.ID) {
		t.Errorf("list -type retention: %d %s %s; want the run listed", code, out, errOut)
	}
}
