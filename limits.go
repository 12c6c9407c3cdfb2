package privacy

import (
	"fmt"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// Limits bounds what Collect, CollectBatch and a rectification take
// (WithLimits). A message past a limit is refused with a FieldError
// (ErrInvalid) naming the field, and nothing is stored. Zero fields keep the
// defaults, which follow Segment's.
type Limits struct {
	// MessageBytes bounds a message's size (default DefaultMessageBytes, 32
	// KiB, Segment's bound per message on its tracking API): the bytes of
	// its message id, identifiers, event name, source, and of every string
	// and key of its traits or properties, nested ones included, plus
	// what JSON takes beyond them for each value (profile.ValueOverhead, a
	// number's digits) and 20 for each external identifier: no more than
	// their JSON takes, so a message Segment takes is taken. A message whose
	// values share maps counts them once for each place, as its JSON would:
	// the check stops at the bound, so its cost is bounded too.
	MessageBytes int
	// Properties bounds the keys of a Track's Properties (default
	// DefaultProperties, 300: Segment drops events with more).
	Properties int
	// MessageIDBytes bounds MessageID (default DefaultMessageIDBytes, 100:
	// Segment drops messages with a longer one).
	MessageIDBytes int
	// FutureSkew is how far ahead of the Controller's clock a Timestamp may
	// be (default DefaultFutureSkew, 5 minutes). A later one is taken as the
	// clock's time when the message is collected: a device whose clock runs
	// ahead would otherwise stamp traits that no later message could replace
	// under last-updated-wins, and events dated in the future. Segment
	// likewise corrects a client's clock skew, bringing the timestamp back
	// towards the time it received the message.
	FutureSkew time.Duration
}

// The default Limits.
const (
	DefaultMessageBytes   = 32 << 10
	DefaultProperties     = 300
	DefaultMessageIDBytes = 100
	DefaultFutureSkew     = 5 * time.Minute
	// maxLimit bounds a configured byte limit (16 MiB): the values are held
	// in memory, and copied on their way to every backend.
	maxLimit = 16 << 20
)

// withDefaults returns l with its zero fields set to the defaults, or an
// error naming the field that is out of range.
func (l Limits) withDefaults() (Limits, error) {
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"MessageBytes", &l.MessageBytes, DefaultMessageBytes},
		{"Properties", &l.Properties, DefaultProperties},
		{"MessageIDBytes", &l.MessageIDBytes, DefaultMessageIDBytes},
	} {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < 0 || *f.v > maxLimit:
			return l, fmt.Errorf("WithLimits: Limits.%s %d: want 1 to %d, or 0 for the default", f.name, *f.v, maxLimit)
		}
	}
	switch {
	case l.FutureSkew == 0:
		l.FutureSkew = DefaultFutureSkew
	case l.FutureSkew < 0:
		return l, fmt.Errorf("WithLimits: Limits.FutureSkew %v: want a positive duration, or 0 for the default", l.FutureSkew)
	}
	return l, nil
}

// WithLimits sets the bounds on collected messages; zero fields keep their
// defaults. A field out of range fails New with ErrInvalid.
func WithLimits(l Limits) Option {
	return func(c *config) error {
		var err error
		c.limits, err = l.withDefaults()
		return err
	}
}

// earliest bounds the Timestamps taken from below: year 1, which every
// backend stores and every export format writes (RFC 3339 has four-digit
// years; PostgreSQL's timestamptz goes back further). Its first instant is
// time.Time's zero value, which means no timestamp and is refused as such.
var earliest = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)

// intake is what checking a message needs beside the message: the identity
// rules, the limits, and the time it is collected at.
type intake struct {
	resolver *identity.Resolver
	limits   *Limits
	now      time.Time
}

// intake returns what checking a message collected now needs.
func (c *Controller) intake() intake {
	return intake{resolver: c.resolver, limits: &c.limits, now: c.now()}
}
