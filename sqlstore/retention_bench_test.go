package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
)

// BenchmarkRetention: events deleted per second by ApplyRetention (a page
// of 100 profiles per transaction, under their locks, journaled and
// audited) on 1,000 people with 10 old events and 1 fresh each, against a
// baseline in the same run: the same rows cleared by one bare UPDATE, with
// no lock, journal or audit. Each iteration has a site of its own, seeded
// with the timer stopped.
//
//	GDPRKIT_TEST_POSTGRES_DSN=... go test -overlay=testdata/testdeps/overlay.json -run '^$' -bench Retention -benchtime 3x -count 3 ./sqlstore/
func BenchmarkRetention(b *testing.B) {
	const people, old = 1000, 10
	for _, d := range testDialects {
		b.Run(d.name, func(b *testing.B) {
			for _, how := range []string{"bare_update", "ApplyRetention"} {
				b.Run(how, func(b *testing.B) {
					b.ReportAllocs()
					deleted := 0
					for b.Loop() {
						b.StopTimer()
						s := newSite(b, d.dialect)
						seedRetentionOld(b, s, people, old)
						p := s.open(b)
						c := p.controller(b, nil, retentionPolicy)
						b.StartTimer()
						if how == "bare_update" {
							res, err := p.db.ExecContext(context.Background(), s.q(`UPDATE `+s.table("profile_messages")+` SET event_name = NULL,
								properties = NULL, sealed = NULL, ts = NULL, received_at = NULL, event_type = NULL, source = NULL
								WHERE ts IS NOT NULL AND COALESCE(received_at, ts) < $1`), cutoff(d.name, time.Now().Add(-24*time.Hour)))
							must(b, err)
							n, err := res.RowsAffected()
							must(b, err)
							deleted += int(n)
						} else {
							rep, err := c.ApplyRetention(context.Background(), privacy.RetentionOptions{})
							must(b, err)
							deleted += rep.Events
						}
						b.StopTimer()
						c.Close()
						p.close()
						b.StartTimer()
					}
					if deleted != b.N*people*old {
						b.Fatalf("deleted %d events in %d runs, want %d each", deleted, b.N, people*old)
					}
					b.ReportMetric(float64(deleted)/b.Elapsed().Seconds(), "events/s")
				})
			}
		})
	}
}

// cutoff is t as the dialect stores times: microseconds since the epoch on
// SQLite, a time on PostgreSQL.
func cutoff(dialect string, t time.Time) any {
	if dialect == "sqlite" {
		return t.UnixMicro()
	}
	return t
}
