package main

// WithRemoteDestinations and the command's -destinations, as an adversarial
// review attacked them: what a right applied from the command line owes
// the hosts' destinations reaches them, once and in order; the defects it
// found (audience news owed to nobody, names the outbox refuses, collected
// messages routed past consent) each failed here first.

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

func rdFlush(t *testing.T, c *privacy.Controller) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func rdAudienceNews(r *destination.Recorder, event string) int {
	n := 0
	for _, m := range r.Messages() {
		if m.Event == event {
			n++
		}
	}
	return n
}

// rdHostWithAudience starts a host with crm and an audience ada is in, and
// has crm told she entered it.
func rdHostWithAudience(t *testing.T, d database, keyBytes []byte) (*privacy.Controller, *destination.Recorder) {
	t.Helper()
	ctx := context.Background()
	crm := destination.NewRecorder("crm")
	host, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes), privacy.WithDestinations(crm))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	if err := host.DefineAudience(ctx, audience.Definition{Key: "pros", Query: `trait('plan') = 'pro'`}); err != nil {
		t.Fatal(err)
	}
	if err := host.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	rdFlush(t, host)
	if n := rdAudienceNews(crm, destination.AudienceEntered); n != 1 {
		t.Fatalf("crm was told of %d audience entries, want 1", n)
	}
	return host, crm
}

// The control: the host's own SUPPRESS_ONLY tells crm that ada left the
// audience.
func TestRemoteHostSuppressTellsAudienceExit(t *testing.T) {
	d := sqliteDatabase(t)
	keyBytes, key := newKey(t)
	migrated(t, d, key)
	host, crm := rdHostWithAudience(t, d, keyBytes)
	if _, err := host.Suppress(context.Background(), identity.ID{Type: "user_id", Value: "ada"}); err != nil {
		t.Fatal(err)
	}
	rdFlush(t, host)
	if n := rdAudienceNews(crm, destination.AudienceExited); n != 1 {
		t.Fatalf("after the host's suppress, crm was told of %d audience exits, want 1", n)
	}
}

// `gdprkit suppress` needed no -destinations (only erase, deleting applies
// and rectify did), and a Controller without the hosts' destinations owes
// the audience exit the suppression causes to nobody (stageOutbox:
// holders(c.destinations)): crm, which was told ada entered "pros", is
// never told she left; the host's Refresh finds nothing to tell either,
// the stored membership having changed already.
func TestRemoteCLISuppressLosesAudienceExit(t *testing.T) { rdBoth(t, rdCLISuppressLosesAudienceExit) }

func rdCLISuppressLosesAudienceExit(t *testing.T, d database) {
	keyBytes, key := newKey(t)
	migrated(t, d, key)
	host, crm := rdHostWithAudience(t, d, keyBytes)
	// Exactly as the usage allows: no -destinations at all.
	nd := database{flags: d.flags[:len(d.flags)-2], store: d.store} // without "-destinations none"
	// Without -destinations the right is refused, changing nothing ...
	if code, out, errOut := nd.gdprkit(t, key, "suppress", "user_id:ada"); code != exitUsage {
		t.Fatalf("suppress without -destinations: %d %s %s, want the usage refused", code, out, errOut)
	}
	// ... with the hosts' names, what it owes them is owed.
	if code, out, errOut := nd.gdprkit(t, key, "-destinations", "crm", "suppress", "user_id:ada"); code != 0 {
		t.Fatalf("suppress: %d %s %s", code, out, errOut)
	}
	if _, err := host.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	rdFlush(t, host)
	if n := rdAudienceNews(crm, destination.AudienceExited); n != 1 {
		t.Errorf("after `gdprkit suppress user_id:ada` (no -destinations, as the usage allows), crm was told of %d audience exits, want 1", n)
	}
}

// The same for UNSUPPRESS: ada, suppressed by the host (crm told she left),
// unsuppressed from the command line re-enters "pros", and crm is never
// told.
func TestRemoteCLIUnsuppressLosesAudienceEntry(t *testing.T) {
	rdBoth(t, rdCLIUnsuppressLosesAudienceEntry)
}

func rdCLIUnsuppressLosesAudienceEntry(t *testing.T, d database) {
	keyBytes, key := newKey(t)
	migrated(t, d, key)
	host, crm := rdHostWithAudience(t, d, keyBytes)
	if _, err := host.Suppress(context.Background(), identity.ID{Type: "user_id", Value: "ada"}); err != nil {
		t.Fatal(err)
	}
	rdFlush(t, host)
	nd := database{flags: d.flags[:len(d.flags)-2], store: d.store} // without "-destinations none"
	// Without -destinations the right is refused, changing nothing ...
	if code, out, errOut := nd.gdprkit(t, key, "unsuppress", "user_id:ada"); code != exitUsage {
		t.Fatalf("unsuppress without -destinations: %d %s %s, want the usage refused", code, out, errOut)
	}
	// ... with the hosts' names, what it owes them is owed.
	if code, out, errOut := nd.gdprkit(t, key, "-destinations", "crm", "unsuppress", "user_id:ada"); code != 0 {
		t.Fatalf("unsuppress: %d %s %s", code, out, errOut)
	}
	if _, err := host.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	rdFlush(t, host)
	members, _ := host.Members(context.Background(), "pros")
	if n := rdAudienceNews(crm, destination.AudienceEntered); len(members) == 1 && n != 2 {
		t.Errorf("ada is back in pros after `gdprkit unsuppress`, crm was told of %d entries, want 2 (the first and the re-entry)", n)
	}
}

// The intended flow, hosts started after the command exits, and
// restarted: the rectification reaches crm after the identify queued before
// it, the deletion reaches crm once, and both requests end FINISHED once a
// host took them over (the command's lease lapsed: clock a minute ahead).
func TestRemoteHostAfterCLIExits(t *testing.T) { rdBoth(t, rdHostAfterCLIExits) }

func rdHostAfterCLIExits(t *testing.T, d database) {
	ctx := context.Background()
	keyBytes, key := newKey(t)
	migrated(t, d, key)
	crm := destination.NewRecorder("crm")
	host, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes), privacy.WithDestinations(crm))
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	rdFlush(t, host)
	if err := host.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"plan": "pro2"}, Timestamp: time.Now().Add(-time.Minute / 2)}); err != nil {
		t.Fatal(err)
	}
	host.Close() // its second identify still queued
	code, out, errOut := d.gdprkit(t, key, "-destinations", "crm", "-json", "rectify", "user_id:ada", `plan="team"`)
	if code != 0 {
		t.Fatalf("rectify: %d %s %s", code, out, errOut)
	}
	var rr wireReceipt
	_ = json.Unmarshal([]byte(out), &rr)
	newHost := func() *privacy.Controller {
		h, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes), privacy.WithDestinations(crm),
			privacy.WithInstance("host"), privacy.WithClock(func() time.Time { return time.Now().Add(time.Minute) }))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		rdFlush(t, h)
		return h
	}
	h := newHost()
	if st, err := h.Status(ctx, rr.ID); err != nil || st.Status != privacy.Finished {
		t.Errorf("rectification %s is %v (%v)", rr.ID, st.Status, err)
	}
	h.Close()
	code, out, errOut = d.gdprkit(t, key, "-destinations", "crm", "-json", "erase", "user_id:ada")
	if code != 0 {
		t.Fatalf("erase: %d %s %s", code, out, errOut)
	}
	var r wireReceipt
	_ = json.Unmarshal([]byte(out), &r)
	for i := 0; i < 2; i++ { // and a restart
		h := newHost()
		if st, err := h.Status(ctx, r.ID); err != nil || st.Status != privacy.Finished {
			t.Errorf("round %d: erasure %s is %v (%v)", i, r.ID, st.Status, err)
		}
		h.Close()
	}
	msgs := crm.Messages()
	if len(crm.Deletions()) != 1 || len(msgs) != 3 || msgs[1].Traits["plan"] != "pro2" || msgs[2].Traits["plan"] != "team" {
		t.Errorf("crm: %d deletions, %d messages (%+v); want 1, and the identifies then the rectification", len(crm.Deletions()), len(msgs), msgs)
	}
}

// consentingRecorder falls under consent categories.
type consentingRecorder struct {
	*destination.Recorder
	categories []string
}

func (r consentingRecorder) ConsentCategories() []string { return r.categories }

// A Controller with remote destinations collects (nothing refuses it): it
// knows none of their consent categories (consentCategories(cfg.dests)),
// so routeMessage sends a message whose consent denies "Advertising" to
// the host's ads, which declares it.
func TestRemoteRemoteDestinationIgnoresConsent(t *testing.T) {
	ctx := context.Background()
	d := sqliteDatabase(t)
	keyBytes, key := newKey(t)
	migrated(t, d, key)
	ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
	host, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes), privacy.WithDestinations(ads))
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	intake, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes), privacy.WithRemoteDestinations("ads"))
	if err != nil {
		t.Fatal(err)
	}
	defer intake.Close()
	err = intake.Collect(ctx, privacy.Track{UserID: "ada", Event: "Viewed", Timestamp: time.Now().Add(-time.Minute),
		Context: map[string]any{"consent": map[string]any{"categoryPreferences": map[string]any{"Advertising": false}}}})
	if err != nil {
		t.Logf("collect refused: %v", err)
		return
	}
	rdFlush(t, host)
	if n := len(ads.Messages()); n != 0 {
		t.Errorf("ada denied Advertising; ads (Advertising) was sent %d messages collected by a Controller naming it remote", n)
	}
}

// WithDestinations refuses a name the outbox cannot keep ("a name it
// refuses would fail every change, or deliver nothing");
// WithRemoteDestinations checks only for empty names and repeats.
func TestRemoteRemoteNameTheOutboxRefuses(t *testing.T) {
	ctx := context.Background()
	d := sqliteDatabase(t)
	keyBytes, key := newKey(t)
	migrated(t, d, key)
	long := strings.Repeat("x", 300)
	for what, name := range map[string]string{"too long": long, "invalid UTF-8": "crm\xff", "NUL": "c\x00rm"} {
		c, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes), privacy.WithRemoteDestinations(name))
		if err != nil {
			continue // refused: good
		}
		host, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes))
		if err != nil {
			t.Fatal(err)
		}
		if err := host.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now().Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
		host.Close()
		r, err := c.Erase(ctx, identity.ID{Type: "user_id", Value: "ada"})
		var st privacy.Status
		if r != nil {
			st = r.Status
		}
		t.Errorf("%s: WithRemoteDestinations accepted a name WithDestinations refuses; an erasure then: %s, %v", what, st, err)
		c.Close()
	}
}

func rdBoth(t *testing.T, f func(*testing.T, database)) {
	for name, open := range map[string]func(*testing.T) database{"sqlite": sqliteDatabase, "postgres": postgresDatabase} {
		t.Run(name, func(t *testing.T) { f(t, open(t)) })
	}
}

// "none" stands for hosts without destinations, and stands alone: mixed
// with names it would be taken for a destination named none.
func TestRemoteNoneStandsAlone(t *testing.T) {
	d := sqliteDatabase(t)
	_, key := newKey(t)
	migrated(t, d, key)
	code, out, errOut := d.gdprkit(t, key, "-destinations", "crm,none", "suppress", "user_id:ada")
	if code != exitUsage || !strings.Contains(errOut, "none stands alone") {
		t.Fatalf("-destinations crm,none: %d %q %q, want a usage error", code, out, errOut)
	}
}
