package privacy

// Delivery to destinations: what each collected message and audience change
// sends, through the outbox (internal/outbox), and how to wait for it.

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

// Delivery configures how the outbox delivers to destinations.
type Delivery struct {
	// MaxAttempts bounds the tries per message or deletion (default 8).
	MaxAttempts int
	// Backoff is the wait after the first failure, doubled after each further one
	// up to MaxBackoff (defaults 100ms and 30s).
	Backoff, MaxBackoff time.Duration
	// Timeout bounds each call to a destination (default 30s). A destination that
	// ignores its context can still hold its own worker; it never holds the
	// collection path or other destinations.
	Timeout time.Duration
	// BatchSize bounds the messages per Send (default 100).
	BatchSize int
}

func (d Delivery) withDefaults() (Delivery, error) {
	if d.MaxAttempts < 0 || d.Backoff < 0 || d.MaxBackoff < 0 || d.Timeout < 0 || d.BatchSize < 0 {
		return d, errors.New("WithDelivery: negative setting")
	}
	if d.MaxAttempts == 0 {
		d.MaxAttempts = 8
	}
	if d.Backoff == 0 {
		d.Backoff = 100 * time.Millisecond
	}
	if d.MaxBackoff == 0 {
		d.MaxBackoff = 30 * time.Second
	}
	if d.Timeout == 0 {
		d.Timeout = 30 * time.Second
	}
	if d.BatchSize == 0 {
		d.BatchSize = 100
	}
	return d, nil
}

// DeliveryStats counts what the outbox did for one destination.
type DeliveryStats struct {
	// Delivered messages and deletions the destination accepted.
	Delivered uint64
	// Failed ones used up their attempts.
	Failed uint64
	// NotSupported deletions the destination cannot do.
	NotSupported uint64
	// Retries counts failed attempts that were tried again.
	Retries uint64
	// Pending ones wait for delivery.
	Pending int
}

// deliverChanges queues "Audience Entered" and "Audience Exited" for every
// destination, addressed by every identifier of the profile.
func (c *Controller) deliverChanges(ctx context.Context, pid identity.ProfileID, version uint64, changes []audience.Change, now time.Time) {
	if len(changes) == 0 || len(c.destinations) == 0 {
		return
	}
	var ids []identity.ID
	if node, err := c.graph.Node(ctx, pid); err == nil {
		for _, l := range node.Links {
			ids = append(ids, l.ID)
		}
	}
	msgs := make([]destination.Message, len(changes))
	for i, ch := range changes {
		event, verb := destination.AudienceExited, "exited"
		if ch.Entered {
			event, verb = destination.AudienceEntered, "entered"
		}
		msgs[i] = destination.Message{
			// Stable across retries: the same change of the same profile version.
			MessageID:  string(pid) + ":" + ch.Key + ":" + verb + ":" + strconv.FormatUint(version, 10),
			Type:       destination.TypeTrack,
			Event:      event,
			ProfileID:  pid,
			IDs:        ids,
			Properties: map[string]any{"audience_key": ch.Key},
			Timestamp:  now,
		}
	}
	c.outbox.Send(msgs)
}

// Flush returns once everything pending for destinations has been delivered or
// has used up its attempts, or when ctx ends (then with an error saying how much
// is still pending). Tests and shutdown call it to wait for delivery.
func (c *Controller) Flush(ctx context.Context) error {
	if err := c.outbox.Flush(ctx); err != nil {
		return backendError("flush", err)
	}
	return nil
}

// DeliveryStats returns, per destination name, what the outbox has delivered,
// given up on and still holds.
func (c *Controller) DeliveryStats() map[string]DeliveryStats {
	out := make(map[string]DeliveryStats, len(c.destinations))
	for name, s := range c.outbox.Stats() {
		out[name] = DeliveryStats(s)
	}
	return out
}

// deliverMessage queues the collected message, addressed by its own
// identifiers, for every destination.
func (c *Controller) deliverMessage(pid identity.ProfileID, msg *message, matches []identity.Match) {
	if len(c.destinations) == 0 {
		return
	}
	ids := make([]identity.ID, len(matches))
	for i, m := range matches {
		ids[i] = m.ID
	}
	m := destination.Message{
		MessageID: msg.messageID,
		Type:      msg.kind,
		ProfileID: pid,
		IDs:       ids,
		Timestamp: msg.timestamp,
	}
	if msg.kind == destination.TypeIdentify {
		m.Traits = msg.traits // nil values travel too: they remove the trait downstream
	} else {
		m.Event, m.Properties = msg.event, msg.props
	}
	c.outbox.Send([]destination.Message{m})
}
