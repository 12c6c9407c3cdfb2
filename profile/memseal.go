package profile

// Sealing in memory (NewSealedMemStore): trait values and event properties
// are kept as JSON sealed under a data key of the profile's own, made with
// the profile and dropped with it. Values are sealed when a write is staged,
// outside the store's lock, and opened when read, so what the store holds
// between the two is ciphertext only.

import (
	"errors"
	"fmt"
	"sync"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/jsontext"
	"github.com/gdprkit/privacy/keyring"
)

// sealedValue is a trait value as a sealed MemStore keeps it: its JSON,
// sealed under the profile's data key for the trait's name. Its type tells a
// sealed value from a clear one: no caller's value is of it.
type sealedValue []byte

// Fields the associated data binds a sealed value to, beside the profile.
func sealedTraitField(name string) string { return "trait:" + name }
func sealedEventField(id string) string   { return "event:" + id + ":properties" }
func sealedContextField(id string) string { return "event:" + id + ":context" }

// sealEncoder is a buffer and an encoder for sealJSON.
type sealEncoder struct {
	buf []byte
	jsontext.ValueEncoder
}

// The text is sealed or stored, never compared: map keys need no sorting.
var sealEncoders = sync.Pool{New: func() any {
	return &sealEncoder{buf: make([]byte, 0, 256), ValueEncoder: jsontext.ValueEncoder{Unsorted: true}}
}}

// sealJSON seals v's JSON for field. It encodes the values the Controller
// stores by hand, sparing the collection path encoding/json's reflection;
// another value is normalised first, as NormalizeValue says. Whatever
// happens, the pooled encoder goes back holding nothing of v.
func sealJSON(key *keyring.DataKey, field string, v any) ([]byte, error) {
	se := sealEncoders.Get().(*sealEncoder)
	b := se.buf[:0]
	defer func() {
		clear(b[:cap(b)]) // the text, or what was written of it before a refusal
		se.buf = b[:0]
		se.Reset() // the map keys sorted
		sealEncoders.Put(se)
	}()
	var ok bool
	if b, ok = se.AppendValue(b, v, MaxDepth); !ok {
		n, err := NormalizeValue(field, v)
		if err != nil {
			return nil, reasonOnly(field, err)
		}
		if b, ok = se.AppendValue(b[:0], n, MaxDepth); !ok {
			return nil, fmt.Errorf("%w: %s: not a JSON value", ErrInvalid, field) // NormalizeValue's are
		}
	}
	return key.Seal(field, b), nil
}

// reasonOnly is err, NormalizeValue's about field, with the reason alone:
// its path names the keys of maps, which may be personal data, as the
// value is.
func reasonOnly(field string, err error) error {
	var ve *ValueError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, field, ve.Reason)
	}
	return fmt.Errorf("%w: %s: not a JSON value", ErrInvalid, field)
}

// contextJSON is an event's context as JSON, for a store that keeps values
// in clear and was not handed it (Update.EncodedContext): checked and
// encoded in one walk, as the Controller does.
func contextJSON(field string, v map[string]any) ([]byte, error) {
	budget := MaxValueSize
	_, b, err := encodeObjectWithin(field, v, &budget)
	if err != nil {
		return nil, reasonOnly(field, err)
	}
	return b, nil
}

// openJSON opens what sealJSON sealed into dst.
func openJSON(key *keyring.DataKey, field string, sealed []byte, dst any) error {
	text, err := key.Open(field, sealed)
	if err != nil {
		return fmt.Errorf("profile %s: %s does not open: %w", key.Profile(), field, err)
	}
	defer clear(text) // the decoded value is a copy
	if err := UnmarshalExact(text, dst); err != nil {
		return fmt.Errorf("profile %s: %s does not decode: %w", key.Profile(), field, err)
	}
	return nil
}

// traitValue returns a copy of the trait's value, opened when sealed.
func (p *memProfile) traitValue(name string, t Trait) (any, error) {
	sealed, ok := t.Value.(sealedValue)
	if !ok {
		return CloneValue(t.Value), nil
	}
	var v any
	err := openJSON(p.key, sealedTraitField(name), sealed, &v)
	return v, err
}

// cloneTraits returns a copy of the profile's traits, opened when sealed.
func (p *memProfile) cloneTraits() (map[string]Trait, error) {
	if p.key == nil {
		return CloneTraits(p.traits), nil
	}
	if p.traits == nil {
		return nil, nil
	}
	c := make(map[string]Trait, len(p.traits))
	for name, t := range p.traits {
		v, err := p.traitValue(name, t)
		if err != nil {
			return nil, err
		}
		t.Value = v
		c[name] = t
	}
	return c, nil
}

// cloneEvent returns a copy of e, one of the profile's events, with its
// context (ctx, its JSON, sealed when the store seals) decoded and its
// properties opened when sealed.
func (p *memProfile) cloneEvent(e *Event, ctx []byte) (Event, error) {
	if p.key == nil {
		c := e.Clone()
		if raw := ctx; raw != nil {
			if err := UnmarshalExact(raw, &c.Context); err != nil {
				return Event{}, fmt.Errorf("profile: the context of event %s does not decode: %w", e.MessageID, err)
			}
		}
		return c, nil
	}
	c := *e
	if sealed, ok := p.props[e.MessageID]; ok {
		if err := openJSON(p.key, sealedEventField(e.MessageID), sealed, &c.Properties); err != nil {
			return Event{}, err
		}
	}
	if sealed := ctx; sealed != nil {
		if err := openJSON(p.key, sealedContextField(e.MessageID), sealed, &c.Context); err != nil {
			return Event{}, err
		}
	}
	return c, nil
}

// reseal opens what from sealed for field and seals it under to. It cannot
// fail but for memory corrupted under the store: both keys are the store's
// own and the ciphertext never left it.
func reseal(from, to *keyring.DataKey, field string, sealed []byte) []byte {
	text, err := from.Open(field, sealed)
	if err != nil {
		panic(fmt.Sprintf("profile: sealed MemStore: a value of profile %s does not open with its own key: %v", from.Profile(), err))
	}
	defer clear(text)
	return to.Seal(field, text)
}

// stageSealed returns what an Update op holds in a sealed store: u's trait
// values and event properties sealed under key, everything else copied.
func stageSealed(u *Update, key *keyring.DataKey) (memOp, error) {
	op := memOp{kind: opUpdate, key: key}
	op.u = *u
	op.u.Metadata = u.Metadata.Clone()
	op.u.Remove = append([]string(nil), u.Remove...)
	op.u.Event = nil
	if u.Set != nil {
		op.u.Set = make(map[string]Trait, len(u.Set))
		for name, t := range u.Set {
			sealed, err := sealJSON(key, sealedTraitField(name), t.Value)
			if err != nil {
				return memOp{}, err
			}
			t.Value = sealedValue(sealed)
			op.u.Set[name] = t
		}
	}
	if u.Event != nil {
		op.ev, op.hasEvent = *u.Event, true
		op.ev.Properties, op.ev.Context = nil, nil
		if u.Event.Properties != nil {
			sealed, err := sealJSON(key, sealedEventField(u.Event.MessageID), u.Event.Properties)
			if err != nil {
				return memOp{}, err
			}
			op.props = sealed
		}
		if text, ok := u.EncodedContext.JSONFor(u.Event.Context); ok {
			op.ctx = key.Seal(sealedContextField(u.Event.MessageID), text)
		} else if u.Event.Context != nil {
			sealed, err := sealJSON(key, sealedContextField(u.Event.MessageID), u.Event.Context)
			if err != nil {
				return memOp{}, err
			}
			op.ctx = sealed
		}
	}
	return op, nil
}

// rekey re-seals what op staged under key, the key of the profile it
// lands on: another transaction made the profile, with its own key, after
// this one staged.
func (op *memOp) rekey(key *keyring.DataKey) {
	for name, t := range op.u.Set {
		t.Value = sealedValue(reseal(op.key, key, sealedTraitField(name), t.Value.(sealedValue)))
		op.u.Set[name] = t
	}
	if op.props != nil {
		op.props = reseal(op.key, key, sealedEventField(op.ev.MessageID), op.props)
	}
	if op.ctx != nil {
		op.ctx = reseal(op.key, key, sealedContextField(op.ev.MessageID), op.ctx)
	}
	op.key = key
}

// keyFor returns the data key of the profile as tx sees it, or a new one
// (own) when tx sees no such profile.
func (tx *memTx) keyFor(pid identity.ProfileID) (key *keyring.DataKey, own bool) {
	m, locked := tx.view(pid)
	if p := m[pid]; p != nil {
		key = p.key
	}
	tx.release(locked)
	if key != nil {
		return key, false
	}
	return newKey(pid), true
}

// newKey returns a new data key for the profile.
func newKey(pid identity.ProfileID) *keyring.DataKey {
	key, err := keyring.NewRandomDataKey(pid)
	if err != nil { // it fails only for a key of the wrong size
		panic("profile: sealed MemStore: " + err.Error())
	}
	return key
}

// stagingKey is the key a write is staged under, and whether it was made
// for it.
type stagingKey struct {
	key *keyring.DataKey
	own bool
}

// stage returns the op that applies u to pid, under k in a sealed store
// (looked up when k.key is nil); with takeSet it keeps u.Set itself
// (TraitsTaker), where a sealed store seals each value into a map of its own.
func (tx *memTx) stage(pid identity.ProfileID, u *Update, k stagingKey, takeSet bool) (memOp, error) {
	if !tx.s.sealed {
		op := memOp{kind: opUpdate, pid: pid}
		op.u, op.ev, op.hasEvent = u.clone(takeSet)
		if op.hasEvent && u.Event.Context != nil {
			var err error
			if op.ctx, _ = u.EncodedContext.JSONFor(u.Event.Context); op.ctx == nil {
				if op.ctx, err = contextJSON(sealedContextField(u.Event.MessageID), u.Event.Context); err != nil {
					return memOp{}, err
				}
			}
		}
		return op, nil
	}
	if k.key == nil {
		k.key, k.own = tx.keyFor(pid)
	}
	op, err := stageSealed(u, k.key)
	op.pid, op.ownKey = pid, k.own
	return op, err
}
