package sqlstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gdprkit/privacy/internal/jsontext"
	"github.com/gdprkit/privacy/profile"
)

// encodeRecipients writes a profile's recipients column as encoding/json
// writes []profile.Recipient, by hand: a profile owed to a destination has
// its recipients rewritten with every batch (LastSent moves), and
// reflection over them cost a collection batch about as much as writing
// its outbox rows. Every release reads it: the column has always had this
// form.
func encodeRecipients(rs []profile.Recipient) (string, error) {
	if rs == nil {
		return "null", nil
	}
	b := make([]byte, 0, 2+len(rs)*112)
	b = append(b, '[')
	for i := range rs {
		r := &rs[i]
		for _, t := range []struct {
			field string
			t     time.Time
		}{{"FirstSent", r.FirstSent}, {"LastSent", r.LastSent}} {
			if err := rfc3339Writable(t.t); err != nil {
				return "", fmt.Errorf("recipient %d's %s: %v", i, t.field, err)
			}
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"Name":`...)
		b, _ = jsontext.AppendString(b, r.Name)
		b = append(b, `,"FirstSent":"`...)
		b = r.FirstSent.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","LastSent":"`...)
		b = r.LastSent.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `"}`...)
	}
	return string(append(b, ']')), nil
}

// decodeRecipients reads a recipients column as encoding/json reads it into
// []profile.Recipient: by hand when it is in the form encodeRecipients
// writes (every row this library wrote), through encoding/json otherwise.
func decodeRecipients(text string) ([]profile.Recipient, error) {
	if rs, ok := decodeRecipientsByHand(text); ok {
		return rs, nil
	}
	var rs []profile.Recipient
	if err := json.Unmarshal([]byte(text), &rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// decodeRecipientsByHand reads text when it is exactly in encodeRecipients'
// form, with no escape in its strings; ok is false for anything else, which
// encoding/json then reads (or refuses) as it always did.
func decodeRecipientsByHand(text string) (rs []profile.Recipient, ok bool) {
	s, ok := strings.CutPrefix(text, "[")
	if !ok {
		return nil, false
	}
	rs = []profile.Recipient{}
	if s == "]" {
		return rs, true
	}
	for {
		var r profile.Recipient
		if s, ok = cutPlainString(s, `{"Name":"`, &r.Name); !ok {
			return nil, false
		}
		if s, ok = cutTime(s, `,"FirstSent":"`, &r.FirstSent); !ok {
			return nil, false
		}
		if s, ok = cutTime(s, `,"LastSent":"`, &r.LastSent); !ok {
			return nil, false
		}
		rs = append(rs, r)
		if s == "}]" {
			return rs, true
		}
		if s, ok = strings.CutPrefix(s, "},"); !ok {
			return nil, false
		}
	}
}

// cutPlainString reads, after prefix (which opens the string), a JSON
// string's rest when it holds no escape, control character or invalid
// UTF-8 (which encoding/json would replace), and returns what follows it.
func cutPlainString(s, prefix string, into *string) (string, bool) {
	s, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return s, false
	}
	end := strings.IndexByte(s, '"')
	if end < 0 {
		return s, false
	}
	v := s[:end]
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == '\\' {
			return s, false
		}
	}
	if !utf8.ValidString(v) {
		return s, false
	}
	*into = v
	return s[end+1:], true
}

// cutTime reads, after prefix, a time as encoding/json reads a time.Time
// (time.Time's strict RFC 3339 text form).
func cutTime(s, prefix string, into *time.Time) (string, bool) {
	var text string
	s, ok := cutPlainString(s, prefix, &text)
	if !ok || into.UnmarshalText([]byte(text)) != nil {
		return s, false
	}
	return s, true
}
