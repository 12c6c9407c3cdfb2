package audience

import (
	"fmt"
	"testing"
	"time"

	"github.com/gdprkit/privacy/profile"
)

// BenchmarkEvaluate50 is the audience work one collected event costs with fifty
// audiences: counting the event and re-evaluating every membership; and cloning
// the state, which a store read and write each do once.
func BenchmarkEvaluate50(b *testing.B) {
	var defs []Definition
	for i := range 20 {
		defs = append(defs, Definition{Key: fmt.Sprint("t", i), Query: fmt.Sprintf(`trait('score') >= %d and trait('plan') != 'free'`, i*5)})
	}
	events := []string{"Product Viewed", "Order Completed", "Cart Viewed", "Signed In"}
	for i := range 20 {
		defs = append(defs, Definition{Key: fmt.Sprint("e", i), Query: fmt.Sprintf(
			`event('%s').where(property('price') >= %d).within(%d days).count() >= %d`, events[i%4], i*10, 7+i, 1+i%3)})
	}
	for i := range 10 {
		defs = append(defs, Definition{Key: fmt.Sprint("c", i), Query: fmt.Sprintf(
			`(audience('t%d') and audience('e%d')) or not trait('country') = 'FR'`, i, i)})
	}
	s, err := NewSet(defs...)
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	traits := map[string]profile.Trait{"plan": {Value: "pro"}, "score": {Value: 50.0}, "country": {Value: "FR"}}
	st := &State{}
	ev := &profile.Event{MessageID: "m", Name: "Order Completed", Properties: map[string]any{"price": 249.0}, Timestamp: ts, ReceivedAt: ts}
	for range 5 {
		s.Observe(st, ev, ts)
	}
	s.Evaluate(st, traits, ts, false)
	b.Run("observe+evaluate", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ev.Timestamp = ts.Add(time.Duration(i))
			s.Observe(st, ev, ts)
			s.Evaluate(st, traits, ts, false)
		}
	})
	b.Run("clone", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = st.Clone()
		}
	})
}
