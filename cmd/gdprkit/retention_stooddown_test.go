package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// TestCLIRetentionSaysItStoodDown: a host's retention run
// stopped (its context ended after a page) and stays RUNNING until a
// Recover. An operator runs `gdprkit retention -apply`: the run stands
// down at once for the host's, and the command must say so, naming it (it
// used to print "deleted 0 events of 0 profiles", FINISHED, and nothing
// else, while 200 expired events were stored).
func TestCLIRetentionSaysItStoodDown(t *testing.T) {
	d := sqliteDatabase(t)
	ctx := context.Background()
	keyBytes, key := newKey(t)
	migrated(t, d, key)
	var offset time.Duration = -72 * time.Hour
	host, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes),
		privacy.WithClock(func() time.Time { return time.Now().Add(offset) }),
		privacy.WithRetention(privacy.RetentionPolicy{Events: 24 * time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	for i := range 200 {
		if err := host.Collect(ctx, privacy.Track{MessageID: fmt.Sprint("m", i), UserID: fmt.Sprint("u", i), Event: "Viewed", Timestamp: time.Now().Add(offset)}); err != nil {
			t.Fatal(err)
		}
	}
	offset = 0
	hctx, cancel := context.WithCancel(ctx)
	rep, err := host.ApplyRetention(hctx, privacy.RetentionOptions{Progress: func(privacy.RetentionReport) { cancel() }})
	if err == nil || rep.Status != privacy.Running {
		t.Fatalf("host run = %+v, %v; want it stopped RUNNING after a page", rep, err)
	}
	code, out, errOut := d.gdprkit(t, key, "-json", "retention", "-events", "24h", "-apply")
	var run retentionJSON
	json.Unmarshal([]byte(out), &run)
	left := 0
	for i := range 200 {
		page, _ := host.Events(ctx, identity.ID{Type: "user_id", Value: fmt.Sprint("u", i)}, profile.EventQuery{})
		left += len(page.Events)
	}
	if run.StoodDownFor != rep.ID {
		t.Errorf("retention -json: %s; want stood_down_for %s", strings.TrimSpace(out), rep.ID)
	}
	if code == 0 && run.Events == 0 && left > 0 && !strings.Contains(out+errOut, rep.ID) {
		t.Errorf("retention -apply: exit %d, %s %s; %d expired events are still stored: the command stood down for run %s and does not say so",
			code, strings.TrimSpace(out), errOut, left, rep.ID)
	}
}
