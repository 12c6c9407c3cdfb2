package export

import (
	"fmt"
	"unicode/utf8"
)

// section is one part of an export. Sections come in this order, in every format;
// their names are the NDJSON record kinds.
type section uint8

const (
	secNone section = iota
	secHeader
	secIdentifiers
	secTraits
	secEvents
	secAudiences
	secRequests
	secRecipients
	secConsent
	secAccounts
	secEnd
)

var sectionNames = [...]string{
	secNone:        "nothing",
	secHeader:      "header",
	secIdentifiers: "identifier",
	secTraits:      "trait",
	secEvents:      "event",
	secAudiences:   "audience",
	secRequests:    "request",
	secRecipients:  "recipient",
	secConsent:     "consent_change",
	secAccounts:    "account",
	secEnd:         "end",
}

func (s section) String() string { return sectionNames[s] }

// sectionOf returns the section whose NDJSON kind is kind.
func sectionOf(kind string) (section, bool) {
	for s := secHeader; s <= secEnd; s++ {
		if sectionNames[s] == kind {
			return s, true
		}
	}
	return secNone, false
}

// order checks what every format promises about order, for the Writer and for
// Read alike: sections in order, the header exactly once and first, trait and
// audience keys strictly ascending (so unique and deterministic), request ids
// unique (outcomes.csv refers to them), account group ids unique, all four
// UTF-8.
type order struct {
	sec      section
	n        [secEnd]int    // records written per section
	last     [secEnd]string // the key of the last trait or audience
	requests map[string]struct{}
	groups   map[string]struct{} // account group ids
}

// check says whether a record of section s with key (a trait or audience key, a
// request id, an account's group id) may come next. It changes nothing. For an
// account the error names the field, not the group id.
func (o *order) check(s section, key string) error {
	switch {
	case o.sec == secEnd:
		return fmt.Errorf("%s after the end", s)
	case o.sec == secNone && s != secHeader:
		return fmt.Errorf("%s before the header: the header comes first", s)
	case s < o.sec || s == secHeader && o.sec == secHeader:
		return fmt.Errorf("%s after %s: sections come in the order header, identifier, trait, event, audience, request, recipient, consent_change, account", s, o.sec)
	}
	switch s {
	case secAccounts:
		if !utf8.ValidString(key) {
			return fmt.Errorf("%s group_id is not valid UTF-8", s)
		}
	case secTraits, secAudiences, secRequests:
		// Other strings have invalid bytes replaced, as encoding/json does; a
		// key so changed could collide or fall out of order.
		if !utf8.ValidString(key) {
			return fmt.Errorf("%s key %q is not valid UTF-8", s, key)
		}
	}
	switch s {
	case secTraits, secAudiences:
		if o.n[s] > 0 && key <= o.last[s] {
			if key == o.last[s] {
				return fmt.Errorf("%s %q appears twice", s, key)
			}
			return fmt.Errorf("%s %q after %q: %s keys must ascend", s, key, o.last[s], s)
		}
	case secRequests:
		if _, dup := o.requests[key]; dup {
			return fmt.Errorf("request id %q appears twice", key)
		}
	case secAccounts:
		if _, dup := o.groups[key]; dup {
			return fmt.Errorf("%s group_id appears twice: an export links each account once", s)
		}
	}
	return nil
}

// add records a record of section s that check allowed.
func (o *order) add(s section, key string) {
	o.sec = s
	o.n[s]++
	switch s {
	case secTraits, secAudiences:
		o.last[s] = key
	case secRequests:
		if o.requests == nil {
			o.requests = make(map[string]struct{})
		}
		o.requests[key] = struct{}{}
	case secAccounts:
		if o.groups == nil {
			o.groups = make(map[string]struct{})
		}
		o.groups[key] = struct{}{}
	}
}

// checkOutcome checks an outcome's kind.
func checkOutcome(o *Outcome) error {
	if o.Kind != OutcomeBackend && o.Kind != OutcomeDestination {
		return fmt.Errorf("outcome %q: kind %q: want %q or %q", o.Name, o.Kind, OutcomeBackend, OutcomeDestination)
	}
	return nil
}
