package privacy_test

import (
	"errors"
	"testing"

	"github.com/gdprkit/privacy"
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
