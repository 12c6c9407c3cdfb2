package privacy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

func TestNewRejectsBadOptions(t *testing.T) {
	badRules := identity.DefaultRules()
	badRules.Blocked = append(badRules.Blocked, identity.Block{Pattern: "("})
	for name, opt := range map[string]privacy.Option{
		"bad regex":  privacy.WithIdentityRules(badRules),
		"nil graph":  privacy.WithIdentity(nil),
		"nil store":  privacy.WithProfiles(nil),
		"nil clock":  privacy.WithClock(nil),
		"nil logger": privacy.WithLogger(nil),
	} {
		if _, err := privacy.New(opt); !errors.Is(err, privacy.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

// TestNewRefusesNamesTheOutboxCannotKeep: a destination or instance name
// the outbox cannot store with its items is refused by New, rather than
// fail every change or deliver nothing.
func TestNewRefusesNamesTheOutboxCannotKeep(t *testing.T) {
	long := strings.Repeat("d", 300)
	for name, opt := range map[string]privacy.Option{
		"a destination name of 300 bytes": privacy.WithDestinations(destination.NewRecorder(long)),
		"a destination name with a NUL":   privacy.WithDestinations(destination.NewRecorder("crm\x00")),
		"an instance name of 300 bytes":   privacy.WithInstance(long),
		"an instance name with a NUL":     privacy.WithInstance("host\x00"),
	} {
		if _, err := privacy.New(opt); !errors.Is(err, privacy.ErrInvalid) {
			t.Errorf("%s: New = %v; want ErrInvalid", name, err)
		}
	}
	rec := destination.NewRecorder(strings.Repeat("d", 256))
	c, err := privacy.New(privacy.WithInstance(strings.Repeat("h", 224)), privacy.WithDestinations(rec))
	if err != nil {
		t.Fatalf("the longest names allowed: New = %v", err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Timestamp: t0}); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Flush(fctx); err != nil || len(rec.Messages()) != 1 {
		t.Errorf("with the longest names: Flush = %v, %d delivered; want the message delivered", err, len(rec.Messages()))
	}
}

// WithRemoteDestinations refuses an empty name, a repeat, and a name the
// Controller delivers to itself.
func TestWithRemoteDestinationsRefusesBadNames(t *testing.T) {
	for name, opts := range map[string][]privacy.Option{
		"empty": {privacy.WithRemoteDestinations("crm", " ")},
		"twice": {privacy.WithRemoteDestinations("crm", "crm")},
		"clash": {privacy.WithDestinations(destination.NewRecorder("crm")), privacy.WithRemoteDestinations("crm")},
	} {
		c, err := privacy.New(opts...)
		if err == nil {
			c.Close()
			t.Errorf("%s: New took it", name)
		}
	}
}

// An unknown request type is not kept: the receipt shows UnknownType, and
// neither it nor its reason quotes the text given.
func TestUnknownRequestTypeIsNotKept(t *testing.T) {
	e := newEnv(t)
	r, err := e.c.Apply(context.Background(), privacy.Request{Type: "ada@example.com", Subjects: []identity.ID{user("u1")}})
	if !errors.Is(err, privacy.ErrInvalid) || r == nil || r.Type != privacy.UnknownType || r.Status != privacy.Invalid {
		t.Fatalf("Apply of an unknown type: %+v, %v", r, err)
	}
	if strings.Contains(r.Reason, "ada") || strings.Contains(err.Error(), "ada") {
		t.Errorf("the unknown type is quoted: %q, %v", r.Reason, err)
	}
	st, err := e.c.Status(context.Background(), r.ID)
	if err != nil || st.Type != privacy.UnknownType {
		t.Errorf("the journal keeps %+v, %v", st, err)
	}
}
