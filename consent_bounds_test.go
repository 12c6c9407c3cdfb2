package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/profile"
)

// TestConsentCategoryNamesBounded: a category's name is bounded
// (profile.MaxConsentCategoryBytes), not only by the message's size: a
// person's consent keeps up to 100 categories, read and written with every
// message of theirs. (A review left 3 MB of names on one person with 100
// messages of one 30 KiB name each.)
func TestConsentCategoryNamesBounded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	long := strings.Repeat("x", profile.MaxConsentCategoryBytes+1)
	err := e.c.Collect(ctx, privacy.Track{MessageID: "c", UserID: "u1", Event: "Viewed", Timestamp: at(1), Context: consentCtx(map[string]any{long: true})})
	var fe *privacy.FieldError
	if !errors.As(err, &fe) || fe.Field != "Context.consent.categoryPreferences" || strings.Contains(err.Error(), long) {
		t.Errorf("a category name of %d bytes: %v; want a FieldError on the preferences, not quoting the name", len(long), err)
	}
	for i := range 100 {
		name := fmt.Sprintf("%03d", i) + strings.Repeat("x", profile.MaxConsentCategoryBytes-3)
		e.collect(t, privacy.Track{MessageID: fmt.Sprint("c", i), UserID: "u1", Event: "Viewed", Timestamp: at(i), Context: consentCtx(map[string]any{name: true})})
	}
	size := 0
	for k := range mustMetadata(t, e.c, user("u1")).Consent.Categories() {
		size += len(k)
	}
	if size > profile.MaxConsentCategories*profile.MaxConsentCategoryBytes {
		t.Errorf("the person's consent holds %d bytes of category names", size)
	}
}
