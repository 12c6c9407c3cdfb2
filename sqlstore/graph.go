package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// graphStore is the identity graph: a row per profile, per linked identifier
// (with its position among the profile's links) and per merge.
type graphStore struct{ base }

var _ identity.Graph = (*graphStore)(nil)

func (g *graphStore) Lookup(ctx context.Context, id identity.ID) (identity.ProfileID, error) {
	pid, err := readKey(ctx, g.s, nil, id, graphLookup)
	if errors.Is(err, sql.ErrNoRows) {
		return "", identity.ErrNotFound // bare, as MemGraph: a miss is routine and callers add context
	}
	if err != nil {
		return "", fmt.Errorf("sqlstore: identity lookup: %w", err)
	}
	return pid, nil
}

func (g *graphStore) Node(ctx context.Context, pid identity.ProfileID) (*identity.Node, error) {
	return readKey(ctx, g.s, nil, pid, graphNode)
}

func (g *graphStore) Begin(ctx context.Context) (identity.Tx, error) {
	return beginTx(ctx, g.s, identity.ErrTxDone, identity.ErrInvalid, func(p part) identity.Tx { return &graphTx{base: g.base, part: p} })
}

// graphLookup returns the identifier's profile, or sql.ErrNoRows.
func graphLookup(ctx context.Context, s *Store, ex Executor, id identity.ID) (identity.ProfileID, error) {
	if s.keys() != nil { // in either form (sealing.go)
		found, err := graphLookupBatch(ctx, s, ex, []identity.ID{id})
		if err != nil {
			return "", err
		}
		if found[id] == "" {
			return "", sql.ErrNoRows
		}
		return found[id], nil
	}
	var pid string
	err := ex.QueryRowContext(ctx, s.sql(`SELECT profile_id FROM {p}identity_links WHERE id_type = $1 AND id_value = $2`),
		id.Type, id.Value).Scan(&pid)
	return identity.ProfileID(pid), err
}

func graphNode(ctx context.Context, s *Store, ex Executor, pid identity.ProfileID) (*identity.Node, error) {
	n := &identity.Node{ID: pid}
	err := ex.QueryRowContext(ctx, s.sql(`SELECT created_at FROM {p}identity_profiles WHERE profile_id = $1`),
		string(pid)).Scan(scanTime(&n.CreatedAt))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: profile %s", identity.ErrNotFound, pid)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading profile %s: %w", pid, err)
	}
	rows, err := ex.QueryContext(ctx, s.sql(`SELECT id_type, id_value, sealed, linked_at, message_id FROM {p}identity_links
		WHERE profile_id = $1 ORDER BY ord, id_type, id_value`), string(pid))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading links of profile %s: %w", pid, err)
	}
	var sealed [][]byte
	for rows.Next() {
		var l identity.Link
		var b []byte
		if err := rows.Scan(&l.ID.Type, &l.ID.Value, &b, scanTime(&l.LinkedAt), &l.MessageID); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlstore: reading links of profile %s: %w", pid, err)
		}
		n.Links, sealed = append(n.Links, l), append(sealed, b)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("sqlstore: reading links of profile %s: %w", pid, err)
	}
	if n.Links, err = s.openLinks(ctx, ex, pid, n.Links, sealed); err != nil {
		return nil, err
	}
	rows, err = ex.QueryContext(ctx, s.sql(`SELECT from_id, merged_at, message_id FROM {p}identity_merges
		WHERE profile_id = $1 ORDER BY ord`), string(pid))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading merges of profile %s: %w", pid, err)
	}
	for rows.Next() {
		var m identity.Merge
		var from string
		if err := rows.Scan(&from, scanTime(&m.At), &m.MessageID); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlstore: reading merges of profile %s: %w", pid, err)
		}
		m.From = identity.ProfileID(from)
		n.Merges = append(n.Merges, m)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("sqlstore: reading merges of profile %s: %w", pid, err)
	}
	return n, nil
}

// closeRows closes rows and returns the error that ended the iteration.
func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

type graphTx struct {
	base
	part
}

func (tx *graphTx) Lookup(ctx context.Context, id identity.ID) (identity.ProfileID, error) {
	pid, err := readKey(ctx, tx.s, &tx.part, id, graphLookup)
	if errors.Is(err, sql.ErrNoRows) {
		// The type only: identifiers stay out of error messages, which get logged.
		return "", fmt.Errorf("%w: no profile has this %s identifier", identity.ErrNotFound, id.Type)
	}
	if err != nil {
		return "", fmt.Errorf("sqlstore: identity lookup: %w", err)
	}
	return pid, nil
}

func (tx *graphTx) Node(ctx context.Context, pid identity.ProfileID) (*identity.Node, error) {
	return readKey(ctx, tx.s, &tx.part, pid, graphNode)
}

func (tx *graphTx) Create(ctx context.Context, pid identity.ProfileID, createdAt time.Time) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if err := checkTime("CreatedAt", createdAt); err != nil {
		return fmt.Errorf("%w: profile %s: %v", identity.ErrInvalid, pid, err)
	}
	return tx.run(ctx, func(ex Executor) error {
		s := tx.s
		res, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}identity_profiles (profile_id, created_at) VALUES ($1, $2)
			ON CONFLICT (profile_id) DO NOTHING`), string(pid), s.ts(createdAt))
		if err != nil {
			return fmt.Errorf("sqlstore: creating profile %s: %w", pid, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var have time.Time
		err = ex.QueryRowContext(ctx, s.sql(`SELECT created_at FROM {p}identity_profiles WHERE profile_id = $1`),
			string(pid)).Scan(scanTime(&have))
		if err != nil {
			return fmt.Errorf("sqlstore: creating profile %s: %w", pid, err)
		}
		if have.Equal(createdAt.Truncate(time.Microsecond)) {
			return nil // a redo
		}
		return fmt.Errorf("%w: profile %s exists", identity.ErrConflict, pid)
	})
}

func (tx *graphTx) Link(ctx context.Context, pid identity.ProfileID, l identity.Link) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if err := checkTime("LinkedAt", l.LinkedAt); err != nil {
		return fmt.Errorf("%w: link to profile %s: %v", identity.ErrInvalid, pid, err)
	}
	return tx.run(ctx, func(ex Executor) error {
		s := tx.s
		if keys := s.keys(); keys != nil {
			return sealedLink(ctx, s, ex, keys, pid, l)
		}
		// One statement in the common case: it inserts only when the profile
		// exists and the identifier is free, as the next link of the profile.
		res, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}identity_links (id_type, id_value, profile_id, ord, linked_at, message_id)
			SELECT $1{text}, $2{text}, n.profile_id,
				(SELECT COALESCE(MAX(ord), 0) + 1 FROM {p}identity_links WHERE profile_id = $3), $4{ts}, $5{text}
			FROM {p}identity_profiles n WHERE n.profile_id = $3
			ON CONFLICT (id_type, id_value) DO NOTHING`),
			l.ID.Type, l.ID.Value, string(pid), s.ts(l.LinkedAt), l.MessageID)
		if err != nil {
			return fmt.Errorf("sqlstore: linking to profile %s: %w", pid, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		owner, err := graphLookup(ctx, s, ex, l.ID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%w: profile %s", identity.ErrNotFound, pid)
		case err != nil:
			return fmt.Errorf("sqlstore: linking to profile %s: %w", pid, err)
		case owner == pid:
			return nil // a redo
		}
		return fmt.Errorf("%w: the %s identifier belongs to profile %s, not %s", identity.ErrConflict, l.ID.Type, owner, pid)
	})
}

func (tx *graphTx) Merge(ctx context.Context, into identity.ProfileID, m identity.Merge) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if m.From == into {
		return fmt.Errorf("%w: cannot merge profile %s into itself", identity.ErrConflict, into)
	}
	if err := checkTime("Merge.At", m.At); err != nil {
		return fmt.Errorf("%w: merge into profile %s: %v", identity.ErrInvalid, into, err)
	}
	return tx.run(ctx, func(ex Executor) error {
		s := tx.s
		var hasInto, hasFrom int
		var intoLinks, intoMerges, fromMerges int64
		err := ex.QueryRowContext(ctx, s.sql(`SELECT
			(SELECT COUNT(*) FROM {p}identity_profiles WHERE profile_id = $1),
			(SELECT COUNT(*) FROM {p}identity_profiles WHERE profile_id = $2),
			(SELECT COALESCE(MAX(ord), 0) FROM {p}identity_links WHERE profile_id = $1),
			(SELECT COALESCE(MAX(ord), 0) FROM {p}identity_merges WHERE profile_id = $1),
			(SELECT COALESCE(MAX(ord), 0) FROM {p}identity_merges WHERE profile_id = $2)`),
			string(into), string(m.From)).Scan(&hasInto, &hasFrom, &intoLinks, &intoMerges, &fromMerges)
		if err != nil {
			return fmt.Errorf("sqlstore: merging into profile %s: %w", into, err)
		}
		if hasFrom == 0 {
			return nil // already merged: a redo
		}
		if hasInto == 0 {
			return fmt.Errorf("%w: profile %s", identity.ErrNotFound, into)
		}
		if err := s.resealLinks(ctx, ex, into, m.From); err != nil {
			return fmt.Errorf("sqlstore: merging profile %s into %s: %w", m.From, into, err)
		}
		// from's links and merge history follow into's, in their order, then
		// the merge itself.
		return s.execMerge(ctx, ex, into,
			stmt{`UPDATE {p}identity_links SET profile_id = $1, ord = ord + $3 WHERE profile_id = $2`,
				[]any{string(into), string(m.From), intoLinks}},
			stmt{`UPDATE {p}identity_merges SET profile_id = $1, ord = ord + $3 WHERE profile_id = $2`,
				[]any{string(into), string(m.From), intoMerges}},
			stmt{`INSERT INTO {p}identity_merges (profile_id, ord, from_id, merged_at, message_id) VALUES ($1, $2, $3, $4, $5)`,
				[]any{string(into), intoMerges + fromMerges + 1, string(m.From), s.ts(m.At), m.MessageID}},
			stmt{`DELETE FROM {p}identity_profiles WHERE profile_id = $1`, []any{string(m.From)}})
	})
}

func (tx *graphTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	return deleteProfile(ctx, tx.s, &tx.part, pid, "profile",
		`DELETE FROM {p}identity_links WHERE profile_id = $1`,
		`DELETE FROM {p}identity_merges WHERE profile_id = $1`,
		`DELETE FROM {p}identity_profiles WHERE profile_id = $1`)
}

// stmt is a statement template with its arguments.
type stmt struct {
	q    string
	args []any
}

// execMerge runs the statements of a merge into profile into, in order, for
// the Merge of the graph and of the profile store, whose errors name it.
func (s *Store) execMerge(ctx context.Context, ex Executor, into identity.ProfileID, stmts ...stmt) error {
	for _, st := range stmts {
		if _, err := ex.ExecContext(ctx, s.sql(st.q), st.args...); err != nil {
			return fmt.Errorf("sqlstore: merging into profile %s: %w", into, err)
		}
	}
	return nil
}

// deleteProfile is the Delete of the backend transactions: it runs stmts,
// which delete a profile's rows and take its id, as one (execAll). what names
// the rows in the error, before the id.
func deleteProfile(ctx context.Context, s *Store, p *part, pid identity.ProfileID, what string, stmts ...string) error {
	return p.run(ctx, func(ex Executor) error {
		if err := s.execAll(ctx, ex, stmts, string(pid)); err != nil {
			return fmt.Errorf("sqlstore: deleting %s %s: %w", what, pid, err)
		}
		return nil
	})
}

// execAll runs statements that take the same parameters. PostgreSQL runs them
// as one statement, the first ones as data-modifying WITH queries, so they cost
// one round trip; SQLite, in process, runs them one after another.
func (s *Store) execAll(ctx context.Context, ex Executor, stmts []string, args ...any) error {
	if s.d == Postgres && len(stmts) > 1 {
		var b strings.Builder
		b.WriteString("WITH ")
		for i, q := range stmts[:len(stmts)-1] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "q%d AS (%s)", i, q)
		}
		b.WriteString(" ")
		b.WriteString(stmts[len(stmts)-1])
		_, err := ex.ExecContext(ctx, s.sql(b.String()), args...)
		return err
	}
	for _, q := range stmts {
		if _, err := ex.ExecContext(ctx, s.sql(q), args...); err != nil {
			return err
		}
	}
	return nil
}
