package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
)

// audienceStore is the audience engine's store: the definitions in the order
// they were defined, a row per profile with its State (a compact JSON
// document) and its NextChange (indexed for Due), and a row per membership
// (the primary key, by audience then profile, serves Members).
type audienceStore struct{ base }

var (
	_ audience.Store    = (*audienceStore)(nil)
	_ audience.Modifier = (*audienceTx)(nil)
)

func (as *audienceStore) Definitions(ctx context.Context) ([]audience.Definition, error) {
	var out []audience.Definition
	err := as.s.read(ctx, func(ex Executor) (err error) {
		out, err = audienceDefinitions(ctx, as.s, ex)
		return err
	})
	return out, err
}

func (as *audienceStore) State(ctx context.Context, pid identity.ProfileID) (*audience.State, error) {
	return readKey(ctx, as.s, nil, pid, audienceState)
}

func (as *audienceStore) Members(ctx context.Context, key string, after identity.ProfileID, limit int) ([]identity.ProfileID, error) {
	var out []identity.ProfileID
	err := as.s.read(ctx, func(ex Executor) (err error) {
		out, err = audienceMembers(ctx, as.s, ex, key, after, limit)
		return err
	})
	return out, err
}

func (as *audienceStore) Due(ctx context.Context, now time.Time, limit int) ([]identity.ProfileID, error) {
	var out []identity.ProfileID
	err := as.s.read(ctx, func(ex Executor) (err error) {
		out, err = audienceDue(ctx, as.s, ex, now, limit)
		return err
	})
	return out, err
}

func (as *audienceStore) Begin(ctx context.Context) (audience.Tx, error) {
	return beginTx(ctx, as.s, audience.ErrTxDone, audience.ErrInvalid, func(p part) audience.Tx { return &audienceTx{base: as.base, part: p} })
}

func audienceDefinitions(ctx context.Context, s *Store, ex Executor) ([]audience.Definition, error) {
	rows, err := ex.QueryContext(ctx, s.sql(`SELECT audience_key, query FROM {p}audience_definitions ORDER BY ord`))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading audience definitions: %w", err)
	}
	var out []audience.Definition
	for rows.Next() {
		var d audience.Definition
		if err := rows.Scan(&d.Key, &d.Query); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlstore: reading audience definitions: %w", err)
		}
		out = append(out, d)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("sqlstore: reading audience definitions: %w", err)
	}
	return out, nil
}

// stateDoc is how a State is stored: compact JSON, counter times as the Unix
// nanoseconds State keeps. Nil and empty slices stay apart (null and []), as
// State.Clone keeps them.
type stateDoc struct {
	Audiences []string     `json:"a"`
	Counters  []counterDoc `json:"c"`
}

type counterDoc struct {
	Key   string  `json:"k"`
	Count int64   `json:"n"`
	Times []int64 `json:"t"`
}

// encodeState checks st's NextChange and encodes it; Audiences must be sorted.
func encodeState(st *audience.State) (string, error) {
	if err := checkTime("NextChange", st.NextChange); err != nil {
		return "", err
	}
	doc := stateDoc{Audiences: st.Audiences}
	if st.Counters != nil {
		doc.Counters = make([]counterDoc, len(st.Counters))
		for i, c := range st.Counters {
			doc.Counters[i] = counterDoc{Key: c.Key, Count: c.Count, Times: c.Times}
		}
	}
	b, err := json.Marshal(doc)
	return string(b), err
}

func decodeState(text string, next time.Time) (*audience.State, error) {
	var doc stateDoc
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		return nil, fmt.Errorf("stored state does not decode: %w", err)
	}
	st := &audience.State{Audiences: doc.Audiences, NextChange: next}
	if doc.Counters != nil {
		st.Counters = make([]audience.Counter, len(doc.Counters))
		for i, c := range doc.Counters {
			st.Counters[i] = audience.Counter{Key: c.Key, Count: c.Count, Times: c.Times}
		}
	}
	return st, nil
}

func audienceState(ctx context.Context, s *Store, ex Executor, pid identity.ProfileID) (*audience.State, error) {
	var text string
	var next time.Time
	err := ex.QueryRowContext(ctx, s.sql(`SELECT state, next_change FROM {p}audience_states WHERE profile_id = $1`),
		string(pid)).Scan(&text, scanTime(&next))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no audience state for profile %s", audience.ErrNotFound, pid)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading the audience state of profile %s: %w", pid, err)
	}
	st, err := decodeState(text, next)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading the audience state of profile %s: %w", pid, err)
	}
	return st, nil
}

func audienceMembers(ctx context.Context, s *Store, ex Executor, key string, after identity.ProfileID, limit int) ([]identity.ProfileID, error) {
	q := `SELECT profile_id FROM {p}audience_members WHERE audience_key = $1 AND profile_id > $2 ORDER BY profile_id`
	args := []any{key, string(after)}
	if limit > 0 {
		q += ` LIMIT $3`
		args = append(args, limit)
	}
	rows, err := ex.QueryContext(ctx, s.sql(q), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading members of audience %s: %w", key, err)
	}
	out, err := scanProfileIDs(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading members of audience %s: %w", key, err)
	}
	if out == nil {
		out = []identity.ProfileID{} // as MemStore: empty, not nil
	}
	return out, nil
}

func audienceDue(ctx context.Context, s *Store, ex Executor, now time.Time, limit int) ([]identity.ProfileID, error) {
	if now.Before(minTime) {
		return nil, nil // nothing is due before the earliest time stored
	}
	// "At or before now": now rounded down, as ts does, to a stored time.
	if !now.Before(maxTime) {
		now = maxTime.Add(-time.Microsecond)
	}
	q := `SELECT profile_id FROM {p}audience_states WHERE next_change IS NOT NULL AND next_change <= $1 ORDER BY next_change, profile_id`
	args := []any{s.ts(now)}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	rows, err := ex.QueryContext(ctx, s.sql(q), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading due audience states: %w", err)
	}
	out, err := scanProfileIDs(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading due audience states: %w", err)
	}
	return out, nil
}

type audienceTx struct {
	base
	part
}

func (tx *audienceTx) Definitions(ctx context.Context) ([]audience.Definition, error) {
	var out []audience.Definition
	err := tx.run(ctx, func(ex Executor) (err error) {
		out, err = audienceDefinitions(ctx, tx.s, ex)
		return err
	})
	return out, err
}

func (tx *audienceTx) State(ctx context.Context, pid identity.ProfileID) (*audience.State, error) {
	return readKey(ctx, tx.s, &tx.part, pid, audienceState)
}

func (tx *audienceTx) Members(ctx context.Context, key string, after identity.ProfileID, limit int) ([]identity.ProfileID, error) {
	var out []identity.ProfileID
	err := tx.run(ctx, func(ex Executor) (err error) {
		out, err = audienceMembers(ctx, tx.s, ex, key, after, limit)
		return err
	})
	return out, err
}

func (tx *audienceTx) Due(ctx context.Context, now time.Time, limit int) ([]identity.ProfileID, error) {
	var out []identity.ProfileID
	err := tx.run(ctx, func(ex Executor) (err error) {
		out, err = audienceDue(ctx, tx.s, ex, now, limit)
		return err
	})
	return out, err
}

func (tx *audienceTx) Define(ctx context.Context, d audience.Definition) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if d.Condition != nil || d.Query == "" {
		// Only the Query is kept: a Condition would be lost.
		return fmt.Errorf("%w: audience %s: define it in canonical form, with the Query of Set.Definitions", audience.ErrInvalid, d.Key)
	}
	return tx.run(ctx, func(ex Executor) error {
		s := tx.s
		res, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}audience_definitions (audience_key, query) VALUES ($1, $2)
			ON CONFLICT (audience_key) DO NOTHING`), d.Key, d.Query)
		if err != nil {
			return fmt.Errorf("sqlstore: defining audience %s: %w", d.Key, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var have string
		err = ex.QueryRowContext(ctx, s.sql(`SELECT query FROM {p}audience_definitions WHERE audience_key = $1`), d.Key).Scan(&have)
		if err != nil {
			return fmt.Errorf("sqlstore: defining audience %s: %w", d.Key, err)
		}
		if have == d.Query {
			return nil // a redo
		}
		return fmt.Errorf("%w: audience %s is already defined", audience.ErrConflict, d.Key)
	})
}

func (tx *audienceTx) Put(ctx context.Context, pid identity.ProfileID, st *audience.State) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("%w: nil audience state for profile %s", audience.ErrInvalid, pid)
	}
	return tx.put(ctx, pid, st)
}

// Modify implements audience.Modifier: the state is read and written in the
// transaction, with fn in between; it saves the caller a copy.
func (tx *audienceTx) Modify(ctx context.Context, pid identity.ProfileID, fn func(st *audience.State) error) error {
	st, err := tx.State(ctx, pid)
	if errors.Is(err, audience.ErrNotFound) {
		st, err = &audience.State{}, nil
	}
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	if err := tx.check(ctx); err != nil { // fn may have ended the transaction
		return err
	}
	return tx.put(ctx, pid, st)
}

// put stores the state and its memberships. It does not keep st.
func (tx *audienceTx) put(ctx context.Context, pid identity.ProfileID, st *audience.State) error {
	keys, text, err := stateRow(st)
	if err != nil {
		return fmt.Errorf("%w: audience state of profile %s: %v", audience.ErrInvalid, pid, err)
	}
	return tx.run(ctx, func(ex Executor) error {
		s := tx.s
		fail := func(err error) error {
			return fmt.Errorf("sqlstore: storing the audience state of profile %s: %w", pid, err)
		}
		_, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}audience_states (profile_id, state, next_change) VALUES ($1, $2, $3)
			ON CONFLICT (profile_id) DO UPDATE SET state = excluded.state, next_change = excluded.next_change`),
			string(pid), text, s.nullTS(st.NextChange))
		if err != nil {
			return fail(err)
		}
		// Memberships: drop those the state no longer has, add the new ones.
		// When nothing changed, both touch no row.
		if len(keys) == 0 || len(keys) > chunk {
			_, err = ex.ExecContext(ctx, s.sql(`DELETE FROM {p}audience_members WHERE profile_id = $1`), string(pid))
		} else {
			args := []any{string(pid)}
			for _, k := range keys {
				args = append(args, k)
			}
			_, err = ex.ExecContext(ctx, s.sql(`DELETE FROM {p}audience_members WHERE profile_id = $1 AND audience_key NOT IN (`+
				placeholders(2, len(keys))+`)`), args...)
		}
		if err != nil {
			return fail(err)
		}
		for rest := keys; len(rest) > 0; {
			n := min(len(rest), chunk)
			var b strings.Builder
			args := []any{string(pid)}
			b.WriteString(`INSERT INTO {p}audience_members (audience_key, profile_id) VALUES `)
			for i, k := range rest[:n] {
				if i > 0 {
					b.WriteString(", ")
				}
				args = append(args, k)
				fmt.Fprintf(&b, "($%d, $1)", len(args))
			}
			b.WriteString(` ON CONFLICT (audience_key, profile_id) DO NOTHING`)
			if _, err := ex.ExecContext(ctx, s.sql(b.String()), args...); err != nil {
				return fail(err)
			}
			rest = rest[n:]
		}
		return nil
	})
}

// stateRow returns what put stores of st: its audiences sorted and distinct,
// as the membership rows and IsMember rely on, and the text of the state with
// them.
func stateRow(st *audience.State) (keys []string, text string, err error) {
	keys = st.Audiences
	if !sortedDistinct(keys) {
		keys = slices.Clone(keys)
		slices.Sort(keys)
		keys = slices.Compact(keys)
	}
	c := *st
	c.Audiences = keys
	text, err = encodeState(&c)
	return keys, text, err
}

func (tx *audienceTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	return deleteProfile(ctx, tx.s, &tx.part, pid, "the audience state of profile",
		`DELETE FROM {p}audience_members WHERE profile_id = $1`,
		`DELETE FROM {p}audience_states WHERE profile_id = $1`)
}

func sortedDistinct(keys []string) bool {
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			return false
		}
	}
	return true
}
