package sqlstore

import (
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/internal/jsontext"
)

// encodeSend encodes a message alone in its row as encoding/json encodes a
// destination.Message without its profile id (its fields in order, empty
// ones too, Source and ReceivedAt left out when empty), written out by hand
// as encodeBundled writes a bundle's: a collection batch encodes one per
// message and person it owes a destination, and reflection over the struct
// cost as much as the maps it holds. Maps are written in their own key
// order, which decoding does not keep. Every release reads it: it is the
// form single rows have always had.
func encodeSend(m *destination.Message) (string, error) {
	if err := checkMessageTimes(m); err != nil {
		return "", err
	}
	b := make([]byte, 0, 320)
	for _, f := range []struct{ key, v string }{{`{"MessageID":`, m.MessageID}, {`,"Type":`, m.Type}, {`,"Event":`, m.Event},
		{`,"Name":`, m.Name}, {`,"Category":`, m.Category}, {`,"GroupID":`, m.GroupID}, {`,"PreviousID":`, m.PreviousID}} {
		b = append(b, f.key...)
		b, _ = jsontext.AppendString(b, f.v)
	}
	b = append(b, `,"ProfileID":"","IDs":`...)
	b = appendIDs(b, m.IDs, `{"Type":`, `,"Value":`)
	for _, f := range []struct {
		key string
		v   map[string]any
	}{{`,"Traits":`, m.Traits}, {`,"Properties":`, m.Properties}, {`,"Context":`, m.Context}} {
		var err error
		if b, err = appendMapOrNull(append(b, f.key...), f.v); err != nil {
			return "", err
		}
	}
	b = append(b, `,"Timestamp":"`...)
	b = m.Timestamp.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if m.Source != "" {
		b = append(b, `,"Source":`...)
		b, _ = jsontext.AppendString(b, m.Source)
	}
	if !m.ReceivedAt.IsZero() {
		b = append(b, `,"ReceivedAt":"`...)
		b = m.ReceivedAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, '}')
	return string(b), nil
}
