package audience

import (
	"fmt"
	"testing"
	"time"

	"github.com/gdprkit/privacy/profile"
)

// mixedDefinitions is a realistic mix of 50 audiences: 20 on traits with every
// operator, 20 on events with where, windows and counts, and 10 combining the
// others with and, or, not and audience references.
func mixedDefinitions() []Definition {
	var defs []Definition
	traitQueries := []string{
		`trait('plan') = 'pro'`,
		`trait('plan') != 'free'`,
		`trait('score') >= %d`,
		`trait('score') < %d`,
		`trait('email') contains '@example.com'`,
		`trait('phone') exists`,
		`trait('tags') = 'beta'`,
		`trait('age') > 17 and trait('age') <= %d`,
		`trait('country') = 'FR' or trait('country') = 'DE'`,
		`not trait('churned') = true`,
	}
	for i := range 20 {
		q := traitQueries[i%len(traitQueries)]
		if i%len(traitQueries) == 2 || i%len(traitQueries) == 3 || i%len(traitQueries) == 7 {
			q = fmt.Sprintf(q, 20+i*3)
		}
		defs = append(defs, Definition{Key: fmt.Sprint("t", i), Query: q})
	}
	events := []string{"Order Completed", "Product Viewed", "Cart Viewed", "Signed In"}
	for i := range 20 {
		var q string
		switch i % 4 {
		case 0:
			q = fmt.Sprintf(`event('%s').where(property('total') >= %d).within(%d days).count() >= %d`, events[i%4], i*10, 7+i, 1+i%3)
		case 1:
			q = fmt.Sprintf(`event('%s').where(property('category') = 'shoes' and not property('test') = true).within(%d days)`, events[i%4], 14+i)
		case 2:
			q = fmt.Sprintf(`event('%s').in_between(%d days, %d days).count() >= 1`, events[i%4], 1+i%3, 30)
		default:
			q = fmt.Sprintf(`event('%s').count() >= %d`, events[i%4], 1+i)
		}
		defs = append(defs, Definition{Key: fmt.Sprint("e", i), Query: q})
	}
	for i := range 10 {
		var q string
		switch i % 3 {
		case 0:
			q = fmt.Sprintf(`audience('t%d') and audience('e%d')`, i, i)
		case 1:
			q = fmt.Sprintf(`(audience('t%d') or audience('e%d')) and not audience('t%d')`, i, i+4, i+10)
		default:
			q = fmt.Sprintf(`audience('e%d') or trait('vip') = true and event('Order Completed').within(30 days).count() >= 3`, i)
		}
		defs = append(defs, Definition{Key: fmt.Sprint("c", i), Query: q})
	}
	return defs
}

// BenchmarkEvaluate50Mixed is the audience work of one collected track event
// with fifty audiences of every kind and a profile of twenty traits: counting the
// event and re-evaluating every membership. (BenchmarkEvaluate50 in
// bench_test.go measures a simpler mix.)
func BenchmarkEvaluate50Mixed(b *testing.B) {
	s, err := NewSet(mixedDefinitions()...)
	if err != nil {
		b.Fatal(err)
	}
	if s.Len() != 50 {
		b.Fatalf("%d audiences", s.Len())
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := traits(map[string]any{
		"plan": "pro", "score": 61.0, "email": "jo@example.com", "phone": "+33 1 23", "tags": []any{"beta", "vip"},
		"age": 34.0, "country": "FR", "churned": false, "vip": true, "name": "Jo", "city": "Paris",
		"zip": "75001", "locale": "fr-FR", "company": "Acme", "title": "CTO", "logins": 42.0,
		"newsletter": true, "ltv": 1234.5, "signup_source": "ads", "timezone": "Europe/Paris",
	})
	if len(tr) != 20 {
		b.Fatalf("%d traits", len(tr))
	}
	st := &State{}
	props := map[string]any{"total": 249.0, "category": "shoes", "currency": "EUR"}
	for i, name := range []string{"Product Viewed", "Cart Viewed", "Signed In", "Order Completed", "Order Completed"} {
		at := ts.Add(time.Duration(i-5) * day)
		s.Observe(st, &profile.Event{Name: name, Properties: props, Timestamp: at, ReceivedAt: at}, at)
	}
	s.Evaluate(st, tr, ts, false)
	ev := &profile.Event{MessageID: "m", Name: "Order Completed", Properties: props}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := ts.Add(time.Duration(i) * time.Second)
		ev.Timestamp, ev.ReceivedAt = now, now
		s.Observe(st, ev, now)
		s.Evaluate(st, tr, now, false)
	}
	b.StopTimer()
	if len(st.Audiences) == 0 {
		b.Fatal("the profile is in no audience")
	}
}
