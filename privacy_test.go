package privacy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gdprkit/privacy"
)

func TestClosedControllerRefuses(t *testing.T) {
	e := newEnv(t)
	e.c.Close()
	if err := e.c.Collect(context.Background(), privacy.Track{UserID: "u", Event: "E", Timestamp: at(0)}); !errors.Is(err, privacy.ErrClosed) {
		t.Fatalf("Collect after Close: %v, want ErrClosed", err)
	}
	if _, err := e.c.Profile(context.Background(), user("u")); !errors.Is(err, privacy.ErrClosed) {
		t.Fatalf("Profile after Close: %v, want ErrClosed", err)
	}
}
