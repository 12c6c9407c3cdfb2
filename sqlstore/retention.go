package sqlstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

var _ profile.EventPruner = (*profileTx)(nil)

// PruneEvents implements profile.EventPruner, in one statement per chunk of
// profiles. A pruned event's row stays, as the record of its message id,
// with every event column cleared: the values, sealed or clear, go with
// the event. An event is collected at received_at, or at ts when it has
// none (stored before it was kept).
func (tx *profileTx) PruneEvents(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs) ([]int, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	counts := make([]int, len(pids))
	if c.Zero() || len(pids) == 0 {
		return counts, nil
	}
	s := tx.s
	at := map[identity.ProfileID]int{} // each profile's first index in pids
	for i, pid := range pids {
		if _, seen := at[pid]; !seen {
			at[pid] = i
		}
	}
	for rest := pids; len(rest) > 0; {
		n := min(len(rest), chunk)
		q, args := pruneStatement(s, rest[:n], c)
		err := tx.run(ctx, func(ex Executor) error {
			rows, err := ex.QueryContext(ctx, s.sql(q), args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var pid string
				if err := rows.Scan(&pid); err != nil {
					rows.Close()
					return err
				}
				counts[at[identity.ProfileID(pid)]]++
			}
			return closeRows(rows)
		})
		if err != nil {
			return nil, fmt.Errorf("sqlstore: pruning the events of %d profiles: %w", n, err)
		}
		rest = rest[n:]
	}
	return counts, nil
}

// pruneStatement is the UPDATE that clears the expired events of pids,
// returning each cleared row's profile id. The cutoff per source is a CASE
// (sources sorted: one statement text per set of sources); a zero cutoff
// keeps (NULL compares false).
func pruneStatement(s *Store, pids []identity.ProfileID, c profile.Cutoffs) (string, []any) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	ids := make([]string, len(pids))
	for i, pid := range pids {
		ids[i] = arg(string(pid))
	}
	cutoff := func(t time.Time) string {
		if t.IsZero() {
			return "NULL"
		}
		return arg(s.tsCeil(t)) + "{ts}"
	}
	var cut strings.Builder
	if len(c.Sources) == 0 {
		cut.WriteString(cutoff(c.Before))
	} else {
		cut.WriteString("CASE")
		for _, src := range slices.Sorted(maps.Keys(c.Sources)) {
			fmt.Fprintf(&cut, " WHEN source = %s THEN %s", arg(src), cutoff(c.Sources[src]))
		}
		cut.WriteString(" ELSE " + cutoff(c.Before) + " END")
	}
	q := `UPDATE {p}profile_messages SET event_name = NULL, properties = NULL, sealed = NULL, ts = NULL,
		received_at = NULL, event_type = NULL, source = NULL
		WHERE profile_id IN (` + strings.Join(ids, ", ") + `) AND ts IS NOT NULL AND COALESCE(received_at, ts) < ` + cut.String() + `
		RETURNING profile_id`
	return q, args
}
