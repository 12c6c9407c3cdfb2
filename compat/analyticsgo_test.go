package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	analytics "github.com/segmentio/analytics-go/v3"
)

const writeKey = "wk_test"

// wireBatch and wireMessage are what analytics-go posts to /v1/batch.
type wireBatch struct {
	Batch  []wireMessage `json:"batch"`
	SentAt time.Time     `json:"sentAt"`
}

type wireMessage struct {
	Type         string         `json:"type"`
	MessageID    string         `json:"messageId"`
	UserID       string         `json:"userId"`
	AnonymousID  string         `json:"anonymousId"`
	Timestamp    time.Time      `json:"timestamp"`
	Context      map[string]any `json:"context"`
	Integrations map[string]any `json:"integrations"`
	Event        string         `json:"event"`
	Name         string         `json:"name"`
	Category     string         `json:"category"`
	Properties   map[string]any `json:"properties"`
	Traits       map[string]any `json:"traits"`
	GroupID      string         `json:"groupId"`
	PreviousID   string         `json:"previousId"`
}

// message is the library's message for w, sent at sentAt and received at
// receivedAt.
func (w *wireMessage) message(sentAt, receivedAt time.Time) (privacy.Message, error) {
	switch w.Type {
	case "identify":
		return privacy.Identify{MessageID: w.MessageID, UserID: w.UserID, AnonymousID: w.AnonymousID, Traits: w.Traits,
			Timestamp: w.Timestamp, SentAt: sentAt, ReceivedAt: receivedAt, Context: w.Context, Integrations: w.Integrations}, nil
	case "track":
		return privacy.Track{MessageID: w.MessageID, UserID: w.UserID, AnonymousID: w.AnonymousID, Event: w.Event, Properties: w.Properties,
			Timestamp: w.Timestamp, SentAt: sentAt, ReceivedAt: receivedAt, Context: w.Context, Integrations: w.Integrations}, nil
	case "page":
		return privacy.Page{MessageID: w.MessageID, UserID: w.UserID, AnonymousID: w.AnonymousID, Name: w.Name, Category: w.Category,
			Properties: w.Properties, Timestamp: w.Timestamp, SentAt: sentAt, ReceivedAt: receivedAt, Context: w.Context, Integrations: w.Integrations}, nil
	case "screen":
		return privacy.Screen{MessageID: w.MessageID, UserID: w.UserID, AnonymousID: w.AnonymousID, Name: w.Name, Properties: w.Properties,
			Timestamp: w.Timestamp, SentAt: sentAt, ReceivedAt: receivedAt, Context: w.Context, Integrations: w.Integrations}, nil
	case "group":
		return privacy.Group{MessageID: w.MessageID, UserID: w.UserID, AnonymousID: w.AnonymousID, GroupID: w.GroupID, Traits: w.Traits,
			Timestamp: w.Timestamp, SentAt: sentAt, ReceivedAt: receivedAt, Context: w.Context, Integrations: w.Integrations}, nil
	case "alias":
		return privacy.Alias{MessageID: w.MessageID, UserID: w.UserID, PreviousID: w.PreviousID,
			Timestamp: w.Timestamp, SentAt: sentAt, ReceivedAt: receivedAt, Context: w.Context, Integrations: w.Integrations}, nil
	}
	return nil, fmt.Errorf("message type %q", w.Type)
}

// server is an httptest server that collects what analytics-go sends into
// c, and remembers the errors.
type server struct {
	*httptest.Server
	mu   sync.Mutex
	errs []error
}

func newServer(t *testing.T, c *privacy.Controller) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(code int, err error) {
			s.mu.Lock()
			s.errs = append(s.errs, err)
			s.mu.Unlock()
			http.Error(w, err.Error(), code)
		}
		if user, _, ok := r.BasicAuth(); !ok || user != writeKey || r.URL.Path != "/v1/batch" {
			fail(http.StatusUnauthorized, fmt.Errorf("%s with write key %q", r.URL.Path, user))
			return
		}
		received := time.Now()
		var b wireBatch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			fail(http.StatusBadRequest, err)
			return
		}
		msgs := make([]privacy.Message, 0, len(b.Batch))
		for i := range b.Batch {
			m, err := b.Batch[i].message(b.SentAt, received)
			if err != nil {
				fail(http.StatusBadRequest, err)
				return
			}
			msgs = append(msgs, m)
		}
		if err := c.CollectBatch(r.Context(), msgs); err != nil {
			fail(http.StatusBadRequest, err)
			return
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, err := range s.errs {
		t.Errorf("the server refused a batch: %v", err)
	}
}

func newClient(t *testing.T, url string, batchSize int) analytics.Client {
	client, err := analytics.NewWithConfig(writeKey, analytics.Config{Endpoint: url, BatchSize: batchSize, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func enqueue(t *testing.T, client analytics.Client, msgs ...analytics.Message) {
	t.Helper()
	for _, m := range msgs {
		if err := client.Enqueue(m); err != nil {
			t.Fatalf("Enqueue(%T): %v", m, err)
		}
	}
}

// TestAnalyticsGoEveryType sends every message type with analytics-go, with
// context, integrations and externalIds, anonymous-only calls among them,
// and reads back what was stored, field by field.
func TestAnalyticsGoEveryType(t *testing.T) {
	ctx := context.Background()
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	c, err := privacy.New(privacy.WithDestinations(crm, ads))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := newServer(t, c)
	client := newClient(t, srv.URL, 100)

	ts := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	appCtx := &analytics.Context{
		IP:        net.ParseIP("203.0.113.9"),
		UserAgent: "Mozilla/5.0 (compat test)",
		Locale:    "fr-FR",
		Device:    analytics.DeviceInfo{Type: "ios", Id: "ios-device-1", AdvertisingID: "idfa-1"},
		Page:      analytics.PageInfo{URL: "https://shop.example/pricing", Title: "Pricing"},
		Extra: map[string]any{"externalIds": []any{map[string]any{"id": "cus_42", "type": "stripe_id", "collection": "users", "encoding": "none"}},
			"consent": map[string]any{"categoryPreferences": map[string]any{"Advertising": false}}},
	}
	enqueue(t, client,
		analytics.Track{MessageId: "anon-1", AnonymousId: "anon-ada", Event: "Viewed", Properties: analytics.NewProperties().Set("sku", "TENT-2P"), Timestamp: ts},
		analytics.Identify{MessageId: "id-1", UserId: "ada", AnonymousId: "anon-ada", Timestamp: ts.Add(time.Second),
			Traits: analytics.NewTraits().SetEmail("Ada@Example.com").Set("plan", "pro"), Context: appCtx},
		analytics.Track{MessageId: "tr-1", UserId: "ada", Event: "Order Completed", Timestamp: ts.Add(2 * time.Second),
			Properties:   analytics.NewProperties().SetRevenue(249).Set("items", []any{"tent"}),
			Integrations: analytics.NewIntegrations().EnableAll().Disable("ads")},
		analytics.Page{MessageId: "pg-1", UserId: "ada", Name: "Pricing", Timestamp: ts.Add(3 * time.Second), Context: appCtx,
			Properties: analytics.NewProperties().SetURL("https://shop.example/pricing")},
		analytics.Screen{MessageId: "sc-1", UserId: "ada", Name: "Settings", Timestamp: ts.Add(4 * time.Second)},
		analytics.Group{MessageId: "gr-1", UserId: "ada", GroupId: "acme", Timestamp: ts.Add(5 * time.Second),
			Traits: analytics.NewTraits().SetName("Acme").Set("employees", 120)},
		analytics.Alias{MessageId: "al-1", UserId: "ada", PreviousId: "anon-old", Timestamp: ts.Add(6 * time.Second)},
	)
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	srv.check(t)

	ada := identity.ID{Type: identity.TypeUserID, Value: "ada"}
	p, err := c.Profile(ctx, ada)
	if err != nil {
		t.Fatal(err)
	}
	if p.Traits["plan"].Value != "pro" || p.Traits["email"].Value != "Ada@Example.com" {
		t.Errorf("traits %v; want plan and email as sent", p.Traits)
	}
	// Every identifier leads to ada: the anonymous id (the anonymous-only
	// track and the identify), the email trait, the iOS device id, the
	// external id. (Not the advertising id: analytics-go's device has no
	// adTrackingEnabled, and Segment takes it only when that is true.)
	for _, id := range []identity.ID{{Type: "anonymous_id", Value: "anon-ada"}, {Type: "email", Value: "ada@example.com"},
		{Type: "ios.id", Value: "ios-device-1"}, {Type: "stripe_id", Value: "cus_42"}} {
		if q, err := c.Profile(ctx, id); err != nil || q.ID != p.ID {
			t.Errorf("Profile(%v) = %v, %v; want ada's %s", id, q, err, p.ID)
		}
	}
	if _, err := c.Profile(ctx, identity.ID{Type: "anonymous_id", Value: "anon-old"}); err == nil {
		t.Error("the alias linked its previous id")
	}
	page, err := c.Events(ctx, ada, profile.EventQuery{Sort: profile.Asc})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]profile.Event{}
	for _, e := range page.Events {
		byID[e.MessageID] = e
	}
	for id, check := range map[string]func(e profile.Event) bool{
		"anon-1": func(e profile.Event) bool {
			return e.Type == "track" && e.Name == "Viewed" && e.Properties["sku"] == "TENT-2P"
		},
		"tr-1": func(e profile.Event) bool {
			return e.Type == "track" && e.Properties["revenue"] == 249.0 && slices.Equal(e.Properties["items"].([]any), []any{"tent"})
		},
		"pg-1": func(e profile.Event) bool {
			ctxPage, _ := e.Context["page"].(map[string]any)
			return e.Type == "page" && e.Name == "Pricing" && e.Properties["url"] == "https://shop.example/pricing" &&
				e.Context["ip"] == "203.0.113.9" && e.Context["userAgent"] == "Mozilla/5.0 (compat test)" && ctxPage["title"] == "Pricing"
		},
		"sc-1": func(e profile.Event) bool { return e.Type == "screen" && e.Name == "Settings" },
		"gr-1": func(e profile.Event) bool {
			return e.Type == "group" && e.Name == "acme" && e.Properties["name"] == "Acme" && e.Properties["employees"] == 120.0
		},
		"al-1": func(e profile.Event) bool { return e.Type == "alias" && e.Properties["previousId"] == "anon-old" },
	} {
		e, ok := byID[id]
		if !ok || !check(e) {
			t.Errorf("event %s stored as %+v", id, e)
		}
		if ok && !e.Timestamp.After(ts.Add(-time.Second)) {
			t.Errorf("event %s at %v; want about when it was sent (%v)", id, e.Timestamp, ts)
		}
	}
	// The group call made the account's profile and linked ada to it.
	acme, err := c.Account(ctx, "acme")
	if err != nil || acme.Traits["name"].Value != "Acme" || acme.Traits["employees"].Value != 120.0 {
		t.Errorf("Account(acme) = %+v, %v; want its traits name and employees", acme, err)
	}
	if m, err := c.Metadata(ctx, ada); err != nil || len(m.Accounts) != 1 || m.Accounts[0].GroupID != "acme" {
		t.Errorf("ada's accounts = %+v, %v; want acme", m.Accounts, err)
	} else if h := m.Consent.History(); m.Consent.Status("Advertising") != profile.ConsentDenied || len(h) != 1 || h[0].MessageID != "id-1" {
		// The consent came with the identify, and again (no change) with the page.
		t.Errorf("ada's consent = %v, history %+v; want Advertising false, set by id-1", m.Consent.Categories(), h)
	}
	// Integrations and consent routed the messages.
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sent := func(r *destination.Recorder, id string) bool {
		return slices.ContainsFunc(r.Messages(), func(m destination.Message) bool { return m.MessageID == id })
	}
	if !sent(crm, "tr-1") || sent(ads, "tr-1") {
		t.Error("the track disabled for ads: want it sent to crm only")
	}
	if !sent(crm, "pg-1") || !sent(ads, "pg-1") {
		t.Error("the page (ads declares no consent category): want it sent to both")
	}
}

// TestAnalyticsGoBatchOf1000: 1,000 messages of 100 people, in batches of
// 100 as the client sends them, all stored, each person's in order.
func TestAnalyticsGoBatchOf1000(t *testing.T) {
	ctx := context.Background()
	c, err := privacy.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := newServer(t, c)
	client := newClient(t, srv.URL, 100)
	ts := time.Now().Add(-time.Hour).UTC()
	for i := range 1000 {
		enqueue(t, client, analytics.Track{MessageId: fmt.Sprintf("m-%04d", i), UserId: fmt.Sprintf("u-%02d", i%100),
			Event: "Viewed", Properties: analytics.NewProperties().Set("i", i), Timestamp: ts.Add(time.Duration(i) * time.Millisecond)})
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	srv.check(t)
	if st := c.Stats(); st.Collected != 1000 {
		t.Errorf("collected %d messages; want 1000", st.Collected)
	}
	for u := range 100 {
		page, err := c.Events(ctx, identity.ID{Type: "user_id", Value: fmt.Sprintf("u-%02d", u)}, profile.EventQuery{Sort: profile.Asc})
		if err != nil || len(page.Events) != 10 {
			t.Fatalf("u-%02d: %d events, %v; want 10", u, len(page.Events), err)
		}
		for k, e := range page.Events {
			if want := float64(u + 100*k); e.Properties["i"] != want {
				t.Errorf("u-%02d event %d has i=%v; want %v (in order)", u, k, e.Properties["i"], want)
			}
		}
	}
}
