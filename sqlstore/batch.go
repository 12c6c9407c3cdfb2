package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// The batch methods: a batch of collected messages costs one statement per
// step (per chunk of s.batchParams() parameters), whatever its number of
// messages.

var (
	_ identity.BatchReader    = (*graphStore)(nil)
	_ identity.BatchReader    = (*graphTx)(nil)
	_ suppression.BatchReader = (*suppressionList)(nil)
	_ suppression.BatchReader = (*suppressionTx)(nil)
	_ profile.BatchTx         = (*profileTx)(nil)
	_ audience.BatchTx        = (*audienceTx)(nil)
)

// batchParams returns the most parameters one statement of a batch method
// carries. On PostgreSQL, where each statement is a round trip, it is
// maxListParams: well below the driver's limit (65535), and enough for a batch
// of messages to take one statement per step. SQLite runs in process, where a
// statement costs no round trip, and modernc.org/sqlite binds parameters in
// time quadratic in their number: smaller statements are faster there.
func (s *Store) batchParams() int {
	if s.d == SQLite {
		return sqliteBatchParams
	}
	return maxListParams
}

// sqliteBatchParams is SQLite's batchParams.
const sqliteBatchParams = 1000

// listSize returns the length a read's list of n entries (at most limit) is
// sent as: the next power of two, at most limit. The list is padded by
// repeating an entry, which changes no answer. Drivers that prepare and cache
// statements by their text (pgx keeps 512 per connection) then prepare a few
// shapes once, rather than one per batch size.
func listSize(n, limit int) int {
	if n <= 1 {
		return n
	}
	size := 2
	for size < n {
		size <<= 1
	}
	return min(size, limit)
}

// listStmt builds a statement with lists of parameters of any length. The
// fixed parts are templates, through s.sql and its cache; the lists are
// written in the dialect's placeholders directly, so that statements of every
// length are neither cached as templates nor rewritten whole.
type listStmt struct {
	s    *Store
	b    strings.Builder
	n    int // placeholders written
	args []any
}

func (s *Store) newListStmt(head string, params int) *listStmt {
	ls := &listStmt{s: s, args: make([]any, 0, params)}
	ls.b.Grow(len(head) + params*8)
	ls.sql(head)
	return ls
}

// sql appends a template without parameters.
func (ls *listStmt) sql(tmpl string) { ls.b.WriteString(ls.s.sql(tmpl)) }

// tuples appends n tuples of w parameters each, "($1, $2), ($3, $4)", the
// template cast (such as "{text}") after each parameter, numbered after those
// written before. The caller appends the arguments in the same order.
func (ls *listStmt) tuples(n, w int, cast string) { ls.write(n, w, cast, true) }

// valuesTable appends a subquery of n rows of w parameters, for a row value
// IN: "(SELECT column1, column2 FROM (VALUES ($1, $2), ...) AS v)". Both
// dialects name a VALUES list's columns column1, column2, ...; and both look
// each row up in the primary key, where SQLite scans the whole table for a
// bare "IN (VALUES ...)".
func (ls *listStmt) valuesTable(n, w int, cast string) {
	ls.b.WriteString("(SELECT ")
	for j := range w {
		if j > 0 {
			ls.b.WriteString(", ")
		}
		ls.b.WriteString("column")
		ls.b.WriteString(strconv.Itoa(j + 1))
	}
	ls.b.WriteString(" FROM (VALUES ")
	ls.tuples(n, w, cast)
	ls.b.WriteString(") AS v)")
}

// params appends a list of n parameters: "$1, $2, $3".
func (ls *listStmt) params(n int) { ls.write(n, 1, "", false) }

// write writes the placeholders: $N on PostgreSQL, and on SQLite an
// anonymous ?, bound in order (the fixed parts of a list statement have no
// parameters), which modernc.org/sqlite binds much faster than ?N.
func (ls *listStmt) write(n, w int, cast string, paren bool) {
	ph := byte('$')
	if ls.s.d == SQLite {
		ph = '?'
	}
	if cast != "" {
		cast = ls.s.sql(cast)
	}
	var num [20]byte
	for i := range n {
		if i > 0 {
			ls.b.WriteString(", ")
		}
		if paren {
			ls.b.WriteByte('(')
		}
		for j := range w {
			if j > 0 {
				ls.b.WriteString(", ")
			}
			ls.n++
			ls.b.WriteByte(ph)
			if ph == '$' {
				ls.b.Write(strconv.AppendInt(num[:0], int64(ls.n), 10))
			}
			ls.b.WriteString(cast)
		}
		if paren {
			ls.b.WriteByte(')')
		}
	}
}

// tuplesEndingIn appends n tuples of w parameters each, then literal (SQL
// constants) in each: "($1, $2, 0, ”), ($3, $4, 0, ”)".
func (ls *listStmt) tuplesEndingIn(n, w int, literal string) {
	for i := range n {
		if i > 0 {
			ls.b.WriteString(", ")
		}
		ls.b.WriteByte('(')
		for j := range w {
			if j > 0 {
				ls.b.WriteString(", ")
			}
			ls.param()
		}
		ls.b.WriteString(", ")
		ls.b.WriteString(literal)
		ls.b.WriteByte(')')
	}
}

func (ls *listStmt) String() string { return ls.b.String() }

// param appends one placeholder, numbered after those written before.
func (ls *listStmt) param() {
	ls.n++
	if ls.s.d == SQLite {
		ls.b.WriteByte('?')
		return
	}
	ls.b.WriteByte('$')
	ls.b.WriteString(strconv.Itoa(ls.n))
}

// paddedParams appends a list of size parameters (listSize) and their
// arguments: the first n of vals, then the last of them repeated, which
// changes no answer of an IN list. The batch reads send their lists so.
func paddedParams[T ~string](ls *listStmt, vals []T, n, size int) {
	ls.params(size)
	for i := range size {
		ls.args = append(ls.args, string(vals[min(i, n-1)]))
	}
}

// ---------------------------------------------------------------------------
// Identity graph.

// LookupBatch implements identity.BatchReader: one statement per chunk of
// batchParams()/2 distinct identifiers, through the Scope's shared transaction
// when ctx holds this Store's, as Lookup.
func (g *graphStore) LookupBatch(ctx context.Context, ids []identity.ID, dst []identity.ProfileID) ([]identity.ProfileID, error) {
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	return lookupBatch(ctx, g.s, ids, dst, func(f func(Executor) error) error { return g.s.read(ctx, f) })
}

// LookupBatch implements identity.BatchReader in the transaction.
func (tx *graphTx) LookupBatch(ctx context.Context, ids []identity.ID, dst []identity.ProfileID) ([]identity.ProfileID, error) {
	if err := tx.check(ctx); err != nil {
		return dst, err
	}
	return lookupBatch(ctx, tx.s, ids, dst, func(f func(Executor) error) error { return tx.run(ctx, f) })
}

// lookupBatch is LookupBatch, its statements run by run.
func lookupBatch(ctx context.Context, s *Store, ids []identity.ID, dst []identity.ProfileID, run func(func(Executor) error) error) ([]identity.ProfileID, error) {
	if len(ids) == 0 {
		return dst, nil
	}
	var found map[identity.ID]identity.ProfileID
	err := run(func(ex Executor) (err error) {
		found, err = graphLookupBatch(ctx, s, ex, ids)
		return err
	})
	if err != nil {
		return dst, fmt.Errorf("sqlstore: identity lookup: %w", err)
	}
	for _, id := range ids {
		dst = append(dst, found[id])
	}
	return dst, nil
}

// graphLookupBatch returns the profile of each of ids that is linked to one;
// the others map to "". With keys, each identifier is asked for in both
// forms (sealing.go), and a sealed link of a profile without a data key
// (erased) counts for none.
func graphLookupBatch(ctx context.Context, s *Store, ex Executor, ids []identity.ID) (map[identity.ID]identity.ProfileID, error) {
	found := make(map[identity.ID]identity.ProfileID, len(ids))
	uniq := make([]identity.ID, 0, len(ids))
	for _, id := range ids {
		if _, ok := found[id]; !ok {
			found[id] = ""
			uniq = append(uniq, id)
		}
	}
	keys := s.keys()
	forms, err := linkForms(keys, uniq)
	if err != nil {
		return nil, err
	}
	asked := make([]linkForm, 0, len(forms))
	for f := range forms {
		asked = append(asked, f)
	}
	// With the Store's own keyring, whether a sealed link's profile has a
	// key comes with the row; with one elsewhere, it is asked after.
	own := keys != nil && s.ownKeyring(keys)
	head := `SELECT id_type, id_value, profile_id, sealed IS NOT NULL, TRUE FROM {p}identity_links WHERE (id_type, id_value) IN `
	if own {
		head = `SELECT l.id_type, l.id_value, l.profile_id, l.sealed IS NOT NULL,
			l.sealed IS NULL OR EXISTS (SELECT 1 FROM {p}keyring k WHERE k.profile_id = l.profile_id)
			FROM {p}identity_links l WHERE (l.id_type, l.id_value) IN `
	}
	type match struct {
		id     identity.ID
		pid    identity.ProfileID
		sealed bool
	}
	var matches []match
	perStmt := s.batchParams() / 2
	for rest := asked; len(rest) > 0; {
		n := min(len(rest), perStmt)
		size := listSize(n, perStmt)
		q := s.newListStmt(head, 2*size)
		q.valuesTable(size, 2, "{text}")
		for i := range size {
			f := rest[min(i, n-1)]
			q.args = append(q.args, f.typ, f.value)
		}
		rows, err := ex.QueryContext(ctx, q.String(), q.args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var f linkForm
			var pid string
			var keyed bool
			if err := rows.Scan(&f.typ, &f.value, &pid, &f.sealed, &keyed); err != nil {
				rows.Close()
				return nil, err
			}
			// A clear value and an index alike are told apart by sealed; a
			// sealed link of a profile without a key counts for none.
			if id, ok := forms[f]; ok && keyed {
				matches = append(matches, match{id, identity.ProfileID(pid), f.sealed})
			}
		}
		if err := closeRows(rows); err != nil {
			return nil, err
		}
		rest = rest[n:]
	}
	var gone map[identity.ProfileID]bool
	if keys != nil && !own {
		var owners []identity.ProfileID
		for _, m := range matches {
			if m.sealed {
				owners = append(owners, m.pid)
			}
		}
		var err error
		if gone, err = s.keyless(ctx, ex, keys, owners); err != nil {
			return nil, err
		}
	}
	for _, m := range matches {
		if !(m.sealed && gone[m.pid]) {
			found[m.id] = m.pid
		}
	}
	return found, nil
}

// ---------------------------------------------------------------------------
// Suppression list.

// ProfileSuppressedBatch implements suppression.BatchReader: one statement
// per chunk of batchParams() distinct profiles, through the Scope's shared
// transaction when ctx holds this Store's, as ProfileSuppressed.
func (l *suppressionList) ProfileSuppressedBatch(ctx context.Context, pids []identity.ProfileID, dst []bool) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	return profileSuppressedBatch(ctx, l.s, pids, dst, func(f func(Executor) error) error { return l.s.read(ctx, f) })
}

// ProfileSuppressedBatch implements suppression.BatchReader in the
// transaction.
func (tx *suppressionTx) ProfileSuppressedBatch(ctx context.Context, pids []identity.ProfileID, dst []bool) ([]bool, error) {
	if err := tx.check(ctx); err != nil {
		return dst, err
	}
	return profileSuppressedBatch(ctx, tx.s, pids, dst, func(f func(Executor) error) error { return tx.run(ctx, f) })
}

// profileSuppressedBatch is ProfileSuppressedBatch, its statements run by run.
func profileSuppressedBatch(ctx context.Context, s *Store, pids []identity.ProfileID, dst []bool, run func(func(Executor) error) error) ([]bool, error) {
	if len(pids) == 0 {
		return dst, nil
	}
	var found map[identity.ProfileID]bool
	err := run(func(ex Executor) (err error) {
		found, err = profilesSuppressed(ctx, s, ex, pids)
		return err
	})
	if err != nil {
		return dst, err
	}
	for _, pid := range pids {
		dst = append(dst, found[pid])
	}
	return dst, nil
}

// profilesSuppressed returns the suppressed profiles among pids, mapped to
// true.
func profilesSuppressed(ctx context.Context, s *Store, ex Executor, pids []identity.ProfileID) (map[identity.ProfileID]bool, error) {
	found := make(map[identity.ProfileID]bool)
	err := queryProfiles(ctx, s, ex, `SELECT profile_id FROM {p}suppressed_profiles WHERE profile_id IN (`, "suppressed profiles", pids,
		func(rows *sql.Rows) error {
			var pid string
			if err := rows.Scan(&pid); err != nil {
				return err
			}
			found[identity.ProfileID(pid)] = true
			return nil
		})
	if err != nil {
		return nil, err
	}
	return found, nil
}

// uniqueIDs returns pids without repeats, in their order.
func uniqueIDs(pids []identity.ProfileID) []identity.ProfileID {
	seen := make(map[identity.ProfileID]struct{}, len(pids))
	out := make([]identity.ProfileID, 0, len(pids))
	for _, pid := range pids {
		if _, ok := seen[pid]; !ok {
			seen[pid] = struct{}{}
			out = append(out, pid)
		}
	}
	return out
}

// queryProfiles runs head, a SELECT ending in "profile_id IN (", for the
// distinct pids, one statement per chunk of batchParams() with the list
// padded (listSize), and calls scan for each row. what names the rows in
// errors.
func queryProfiles(ctx context.Context, s *Store, ex Executor, head, what string, pids []identity.ProfileID, scan func(*sql.Rows) error) error {
	for rest := uniqueIDs(pids); len(rest) > 0; {
		n := min(len(rest), s.batchParams())
		size := listSize(n, s.batchParams())
		q := s.newListStmt(head, size)
		paddedParams(q, rest, n, size)
		q.sql(`)`)
		rows, err := ex.QueryContext(ctx, q.String(), q.args...)
		if err != nil {
			return fmt.Errorf("sqlstore: reading %s: %w", what, err)
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return fmt.Errorf("sqlstore: reading %s: %w", what, err)
			}
		}
		if err := closeRows(rows); err != nil {
			return fmt.Errorf("sqlstore: reading %s: %w", what, err)
		}
		rest = rest[n:]
	}
	return nil
}

// ---------------------------------------------------------------------------
// Profile store.

// MetadataBatch implements profile.BatchTx: one statement per chunk of
// batchParams() distinct profiles.
func (tx *profileTx) MetadataBatch(ctx context.Context, pids []identity.ProfileID) (map[identity.ProfileID]profile.Metadata, error) {
	return readBatch(ctx, &tx.part, tx.s, pids, `SELECT p.profile_id, `+metadataColumns+` FROM {p}profiles p WHERE p.profile_id IN (`, "profiles",
		scanMetadataRow)
}

// scanMetadataRow reads a row of MetadataBatch: a profile id and its metadata.
func scanMetadataRow(rows *sql.Rows) (identity.ProfileID, profile.Metadata, error) {
	var pid string
	var ms metaScan
	if err := rows.Scan(append([]any{&pid}, ms.dest()...)...); err != nil {
		return "", profile.Metadata{}, err
	}
	m, err := ms.metadata()
	if err != nil {
		return "", profile.Metadata{}, fmt.Errorf("profile %s: %w", pid, err)
	}
	return identity.ProfileID(pid), m, nil
}

// readBatch is the body of the batch reads that map each profile to one row
// (MetadataBatch, StateBatch), so that they check, answer an empty batch and
// fail alike: in the transaction p, it runs head, a SELECT ending in
// "profile_id IN (", for the distinct pids (queryProfiles), and maps the
// profile of each row to what scan reads of it. what names the rows in errors.
func readBatch[V any](ctx context.Context, p *part, s *Store, pids []identity.ProfileID, head, what string,
	scan func(*sql.Rows) (identity.ProfileID, V, error)) (map[identity.ProfileID]V, error) {
	if err := p.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[identity.ProfileID]V, len(pids))
	if len(pids) == 0 {
		return out, nil
	}
	err := p.run(ctx, func(ex Executor) error {
		return queryProfiles(ctx, s, ex, head, what, pids, func(rows *sql.Rows) error {
			pid, v, err := scan(rows)
			if err != nil {
				return err
			}
			out[pid] = v
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PickTraitsBatch implements profile.BatchTx: one statement per chunk of the
// distinct profiles, as many as fit in batchParams() beside the names, each
// profile that exists joined to its traits among the names. More distinct
// names than batchParams()/2 take a statement per chunk of names too.
func (tx *profileTx) PickTraitsBatch(ctx context.Context, pids []identity.ProfileID, names []string) (map[identity.ProfileID][]any, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[identity.ProfileID][]any, len(pids))
	if len(pids) == 0 {
		return out, nil
	}
	// The positions of each name in names, which may repeat one.
	at := make(map[string][]int, len(names))
	uniqNames := make([]string, 0, len(names))
	for i, name := range names {
		if _, ok := at[name]; !ok {
			uniqNames = append(uniqNames, name)
		}
		at[name] = append(at[name], i)
	}
	type sealedTrait struct {
		pid   identity.ProfileID
		key   string
		value []byte
	}
	var sealed []sealedTrait // opened once every statement is read
	err := tx.run(ctx, func(ex Executor) error {
		sealed = sealed[:0]
		s := tx.s
		fail := func(err error) error { return fmt.Errorf("sqlstore: reading traits of profiles: %w", err) }
		uniq := uniqueIDs(pids)
		namesPerStmt := s.batchParams() / 2
		for restNames, first := uniqNames, true; first || len(restNames) > 0; first = false {
			k := min(len(restNames), namesPerStmt)
			kSize := listSize(k, namesPerStmt)
			pidsPerStmt := s.batchParams() - kSize
			for rest := uniq; len(rest) > 0; {
				n := min(len(rest), pidsPerStmt)
				size := listSize(n, pidsPerStmt)
				var q *listStmt
				if k == 0 {
					q = s.newListStmt(`SELECT p.profile_id, NULL, NULL, NULL FROM {p}profiles p WHERE p.profile_id IN (`, size)
				} else {
					q = s.newListStmt(`SELECT p.profile_id, t.trait_key, t.value, t.sealed FROM {p}profiles p
						LEFT JOIN {p}profile_traits t ON t.profile_id = p.profile_id AND t.trait_key IN (`, kSize+size)
					paddedParams(q, restNames, k, kSize)
					q.sql(`) WHERE p.profile_id IN (`)
				}
				paddedParams(q, rest, n, size)
				q.sql(`)`)
				rows, err := ex.QueryContext(ctx, q.String(), q.args...)
				if err != nil {
					return fail(err)
				}
				for rows.Next() {
					var pid string
					var key, value sql.NullString
					var seal []byte
					if err := rows.Scan(&pid, &key, &value, &seal); err != nil {
						rows.Close()
						return fail(err)
					}
					values, ok := out[identity.ProfileID(pid)]
					if !ok {
						values = make([]any, len(names))
						out[identity.ProfileID(pid)] = values
					}
					if !key.Valid {
						continue // the profile has none of these names
					}
					if seal != nil {
						sealed = append(sealed, sealedTrait{identity.ProfileID(pid), key.String, seal})
						continue
					}
					// A value per position, each the caller's to keep.
					for _, i := range at[key.String] {
						v, err := decodeValue(value.String)
						if err != nil {
							rows.Close()
							return fmt.Errorf("sqlstore: reading trait %q of profile %s: %w", key.String, pid, err)
						}
						values[i] = v
					}
				}
				if err := closeRows(rows); err != nil {
					return fail(err)
				}
				rest = rest[n:]
			}
			restNames = restNames[k:]
		}
		if len(sealed) == 0 {
			return nil
		}
		owners := make([]identity.ProfileID, len(sealed))
		for i := range sealed {
			owners[i] = sealed[i].pid
		}
		dks, err := s.openingKeys(ctx, ex, owners)
		if err != nil {
			return err
		}
		for _, st := range sealed {
			text, err := s.openText(st.pid, dks[st.pid], traitField(st.key), sealedJSON{sealed: st.value})
			if err != nil {
				return err
			}
			for _, i := range at[st.key] {
				v, err := decodeValue(text)
				if err != nil {
					return fmt.Errorf("sqlstore: reading trait %q of profile %s: %w", st.key, st.pid, err)
				}
				out[st.pid][i] = v
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// encodedUpdate is an update of a batch checked and encoded by checkUpdate.
type encodedUpdate struct {
	traits []encodedTrait
	props  string
	meta   encodedMeta
}

// encodedMeta is the metadata's JSON columns, encoded by checkUpdate: nil
// for NULL.
type encodedMeta struct {
	recipients, consent, accounts any
}

// messageKey is a recorded message: its profile and message id.
type messageKey struct {
	pid identity.ProfileID
	id  string
}

// traitKey is one trait of one profile.
type traitKey struct {
	pid identity.ProfileID
	key string
}

// UpdateBatch implements profile.BatchTx. It checks and encodes every update
// first; then it records the message ids of the batch (a message id repeated
// in the batch is a duplicate at once) in one statement per chunk, which tells
// the ones recorded before (duplicates, which change nothing); then it writes
// each profile's metadata once, that of its last update, and each trait once,
// as the updates leave it in order: a statement per chunk for the metadata,
// one for the traits set and one for the traits removed. Rows are written in
// key order, so that concurrent batches lock them in one order.
func (tx *profileTx) UpdateBatch(ctx context.Context, updates []profile.BatchUpdate, dup []bool) ([]bool, error) {
	if err := tx.check(ctx); err != nil {
		return dup, err
	}
	if len(updates) == 0 {
		return dup, nil
	}
	enc := make([]encodedUpdate, len(updates))
	for i := range updates {
		u := &updates[i]
		traits, props, meta, err := tx.checkUpdate(u.Profile, &u.Update)
		if err != nil {
			return dup, fmt.Errorf("update %d of the batch: %w", i, err)
		}
		if tx.s.d == Postgres {
			// Update learns it from PostgreSQL, which then aborts the
			// transaction: here it is refused before, so that the caller
			// may go on without the bad update.
			if field := badPostgresText(u); field != "" {
				return dup, fmt.Errorf("%w: update %d of the batch: %s holds a NUL character or invalid UTF-8, which PostgreSQL's text refuses",
					profile.ErrInvalid, i, field)
			}
		}
		enc[i] = encodedUpdate{traits, props, meta}
	}

	// The first update with each message id tries to record it; later ones
	// are duplicates of it.
	isDup := make([]bool, len(updates))
	first := make(map[messageKey]int, len(updates))
	var recording []int
	for i := range updates {
		u := &updates[i]
		if u.MessageID == "" {
			continue
		}
		k := messageKey{u.Profile, u.MessageID}
		if _, ok := first[k]; ok {
			isDup[i] = true
			continue
		}
		first[k] = i
		recording = append(recording, i)
	}
	slices.SortFunc(recording, func(a, b int) int {
		return cmp.Or(cmp.Compare(updates[a].Profile, updates[b].Profile), cmp.Compare(updates[a].MessageID, updates[b].MessageID))
	})

	err := tx.run(ctx, func(ex Executor) error {
		s := tx.s
		fail := func(err error) error { return fmt.Errorf("sqlstore: updating profiles: %w", err) }
		var dks map[identity.ProfileID]*keyring.DataKey
		if keys := s.keys(); keys != nil {
			var sealing []identity.ProfileID
			for i := range updates {
				if len(enc[i].traits) > 0 || updates[i].Event != nil {
					sealing = append(sealing, updates[i].Profile)
				}
			}
			var err error
			if dks, err = s.dataKeys(ctx, ex, keys, sealing, true); err != nil {
				return fail(err)
			}
		}

		// Messages: the rows returned are the ones inserted; the others were
		// recorded before. ON CONFLICT DO NOTHING leaves a PostgreSQL
		// transaction usable.
		recorded := make([]bool, len(updates))
		// Sealing, every event's properties are sealed (each profile has
		// its key): the statement names the one column it writes.
		propsColumn := "properties"
		if dks != nil {
			propsColumn = "sealed"
		}
		msgPerStmt := s.batchParams() / 8
		for rest := recording; len(rest) > 0; {
			n := min(len(rest), msgPerStmt)
			q := s.newListStmt(`INSERT INTO {p}profile_messages (profile_id, message_id, event_name, `+propsColumn+`, ts, received_at, event_type, source) VALUES `, 8*n)
			q.tuples(n, 8, "")
			q.sql(` ON CONFLICT (profile_id, message_id) DO NOTHING RETURNING profile_id, message_id`)
			for _, i := range rest[:n] {
				u := &updates[i]
				var name, props, at, received, typ, source any
				if e := u.Event; e != nil {
					props = enc[i].props
					if dks != nil {
						props = dks[u.Profile].Seal(eventField(u.MessageID), []byte(enc[i].props))
					}
					name, at, received = e.Name, s.ts(e.Timestamp), s.ts(e.ReceivedAt)
					typ, source = nullIfEmpty(e.Type), nullIfEmpty(e.Source)
				}
				q.args = append(q.args, string(u.Profile), u.MessageID, name, props, at, received, typ, source)
			}
			rows, err := ex.QueryContext(ctx, q.String(), q.args...)
			if err != nil {
				return fail(err)
			}
			for rows.Next() {
				var pid, id string
				if err := rows.Scan(&pid, &id); err != nil {
					rows.Close()
					return fail(err)
				}
				if i, ok := first[messageKey{identity.ProfileID(pid), id}]; ok {
					recorded[i] = true
				}
			}
			if err := closeRows(rows); err != nil {
				return fail(err)
			}
			rest = rest[n:]
		}
		for _, i := range recording {
			isDup[i] = !recorded[i]
		}

		// What the updates that are not duplicates leave: each profile's last
		// metadata, and each trait's last Set or Remove (an update's Remove
		// after its Set).
		last := map[identity.ProfileID]int{}
		type traitOp struct {
			remove bool
			t      encodedTrait
		}
		traitOps := map[traitKey]traitOp{}
		for i := range updates {
			if isDup[i] {
				continue
			}
			u := &updates[i]
			last[u.Profile] = i
			for _, t := range enc[i].traits {
				traitOps[traitKey{u.Profile, t.key}] = traitOp{t: t}
			}
			for _, k := range u.Remove {
				traitOps[traitKey{u.Profile, k}] = traitOp{remove: true}
			}
		}
		if len(last) == 0 {
			return nil
		}

		// Metadata: one row per profile, as an upsert may touch a row once.
		pids := make([]identity.ProfileID, 0, len(last))
		for pid := range last {
			pids = append(pids, pid)
		}
		slices.Sort(pids)
		err := execChunks(ctx, s, ex, pids, 11, tupleRows,
			`INSERT INTO {p}profiles (profile_id, created_at, updated_at, version, first_message_id, last_message_id, first_seen, last_seen, recipients, consent, accounts) VALUES `,
			` ON CONFLICT (profile_id) DO UPDATE SET created_at = excluded.created_at, updated_at = excluded.updated_at,
				version = excluded.version, first_message_id = excluded.first_message_id, last_message_id = excluded.last_message_id,
				first_seen = excluded.first_seen, last_seen = excluded.last_seen, recipients = excluded.recipients, consent = excluded.consent, accounts = excluded.accounts`,
			func(q *listStmt, pid *identity.ProfileID) {
				i := last[*pid]
				m := &updates[i].Metadata
				q.args = append(q.args, string(*pid), s.ts(m.CreatedAt), s.ts(m.UpdatedAt), int64(m.Version), m.FirstMessageID, m.LastMessageID,
					s.ts(m.FirstSeen), s.ts(m.LastSeen), enc[i].meta.recipients, enc[i].meta.consent, enc[i].meta.accounts)
			})
		if err != nil {
			return fail(err)
		}

		// Traits: each (profile, key) once, set or removed.
		var set, remove []traitKey
		for k, op := range traitOps {
			if op.remove {
				remove = append(remove, k)
			} else {
				set = append(set, k)
			}
		}
		byKey := func(a, b traitKey) int { return cmp.Or(cmp.Compare(a.pid, b.pid), cmp.Compare(a.key, b.key)) }
		slices.SortFunc(set, byKey)
		slices.SortFunc(remove, byKey)
		// Sealing, every value is sealed and value holds the placeholder;
		// else sealed is NULL: one column is a literal.
		valueColumns, literal := "value, source, updated_at, sealed", "NULL"
		if dks != nil {
			valueColumns, literal = "sealed, source, updated_at, value", "'"+sealedPlaceholder+"'"
		}
		err = execChunks(ctx, s, ex, set, 5, tupleRowsEndingIn(literal),
			`INSERT INTO {p}profile_traits (profile_id, trait_key, `+valueColumns+`) VALUES `,
			` ON CONFLICT (profile_id, trait_key) DO UPDATE SET value = excluded.value, sealed = excluded.sealed, source = excluded.source, updated_at = excluded.updated_at`,
			func(q *listStmt, k *traitKey) {
				t := traitOps[*k].t
				var value any = t.value
				if dks != nil {
					value = dks[k.pid].Seal(traitField(t.key), []byte(t.value))
				}
				q.args = append(q.args, string(k.pid), t.key, value, t.source, t.updated)
			})
		if err != nil {
			return fail(err)
		}
		err = execChunks(ctx, s, ex, remove, 2, textTableRows,
			`DELETE FROM {p}profile_traits WHERE (profile_id, trait_key) IN `, "",
			func(q *listStmt, k *traitKey) { q.args = append(q.args, string(k.pid), k.key) })
		if err != nil {
			return fail(err)
		}
		return nil
	})
	if err != nil {
		return dup, err
	}
	return append(dup, isDup...), nil
}

// ---------------------------------------------------------------------------
// Audience store.

// StateBatch implements audience.BatchTx: one statement per chunk of
// batchParams() distinct profiles.
func (tx *audienceTx) StateBatch(ctx context.Context, pids []identity.ProfileID) (map[identity.ProfileID]*audience.State, error) {
	return readBatch(ctx, &tx.part, tx.s, pids, `SELECT profile_id, state, next_change FROM {p}audience_states WHERE profile_id IN (`, "audience states",
		scanStateRow)
}

// scanStateRow reads a row of StateBatch: a profile id and its state.
func scanStateRow(rows *sql.Rows) (identity.ProfileID, *audience.State, error) {
	var pid, text string
	var next time.Time
	if err := rows.Scan(&pid, &text, scanTime(&next)); err != nil {
		return "", nil, err
	}
	st, err := decodeState(text, next)
	if err != nil {
		return "", nil, fmt.Errorf("the state of profile %s: %w", pid, err)
	}
	return identity.ProfileID(pid), st, nil
}

// putRow is what PutBatch stores for one profile: its last state of the batch.
type putRow struct {
	pid  identity.ProfileID
	keys []string // sorted, distinct
	text string
	next any
}

// membership is one row of audience_members.
type membership struct {
	key string
	pid identity.ProfileID
}

// PutBatch implements audience.BatchTx. It checks every state first (a bad
// one fails the batch with audience.ErrInvalid naming it, before any
// statement) and keeps each profile's last; then, a statement per chunk for
// each step, it upserts the states, deletes the memberships of these profiles
// that their new states lack, and inserts the memberships they have (those
// already there are left alone). Rows are written in key order, so that
// concurrent batches lock them in one order.
func (tx *audienceTx) PutBatch(ctx context.Context, states []audience.BatchState) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if len(states) == 0 {
		return nil
	}
	last := make(map[identity.ProfileID]int, len(states))
	for i, bs := range states {
		if bs.State == nil {
			return fmt.Errorf("%w: state %d of the batch: nil audience state for profile %s", audience.ErrInvalid, i, bs.Profile)
		}
		if err := checkTime("NextChange", bs.State.NextChange); err != nil {
			return fmt.Errorf("%w: state %d of the batch: audience state of profile %s: %v", audience.ErrInvalid, i, bs.Profile, err)
		}
		if tx.s.d == Postgres {
			// Put learns it from PostgreSQL, which then aborts the
			// transaction: here it is refused before.
			bad := badPostgresString(string(bs.Profile))
			for _, k := range bs.State.Audiences {
				bad = bad || badPostgresString(k)
			}
			if bad {
				return fmt.Errorf("%w: state %d of the batch: the profile id or an audience key holds a NUL character or invalid UTF-8, which PostgreSQL's text refuses",
					audience.ErrInvalid, i)
			}
		}
		last[bs.Profile] = i
	}
	rows := make([]putRow, 0, len(last))
	var members []membership
	for pid, i := range last {
		st := states[i].State
		keys, text, err := stateRow(st)
		if err != nil {
			return fmt.Errorf("%w: state %d of the batch: audience state of profile %s: %v", audience.ErrInvalid, i, pid, err)
		}
		rows = append(rows, putRow{pid: pid, keys: keys, text: text, next: tx.s.nullTS(st.NextChange)})
		for _, k := range keys {
			members = append(members, membership{k, pid})
		}
	}
	slices.SortFunc(rows, func(a, b putRow) int { return cmp.Compare(a.pid, b.pid) })
	slices.SortFunc(members, func(a, b membership) int { return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.pid, b.pid)) })

	return tx.run(ctx, func(ex Executor) error {
		s := tx.s
		fail := func(err error) error { return fmt.Errorf("sqlstore: storing audience states: %w", err) }

		err := execChunks(ctx, s, ex, rows, 3, tupleRows,
			`INSERT INTO {p}audience_states (profile_id, state, next_change) VALUES `,
			` ON CONFLICT (profile_id) DO UPDATE SET state = excluded.state, next_change = excluded.next_change`,
			func(q *listStmt, r *putRow) { q.args = append(q.args, string(r.pid), r.text, r.next) })
		if err != nil {
			return fail(err)
		}

		// Memberships the states no longer have: of the profiles of a chunk
		// (found by the profile index), the rows not among their new ones.
		// A chunk carries its profiles' new memberships whole; a profile with
		// more than one statement carries loses all its rows here, inserted
		// again below.
		perStmt := s.batchParams()
		kept := func(r *putRow) int {
			if 1+2*len(r.keys) > perStmt {
				return 0
			}
			return len(r.keys)
		}
		for rest := rows; len(rest) > 0; {
			n, pairs := 0, 0
			for n < len(rest) {
				k := kept(&rest[n])
				if n > 0 && n+1+2*(pairs+k) > perStmt {
					break
				}
				n, pairs = n+1, pairs+k
			}
			q := s.newListStmt(`DELETE FROM {p}audience_members WHERE profile_id IN (`, n+2*pairs)
			q.params(n)
			for _, r := range rest[:n] {
				q.args = append(q.args, string(r.pid))
			}
			if pairs == 0 {
				q.sql(`)`)
			} else {
				// NOT IN a subquery: both dialects look each row up in a
				// hash or an index of the list, where NOT EXISTS would
				// scan the list per row on SQLite. The list has no NULLs.
				q.sql(`) AND (profile_id, audience_key) NOT IN `)
				q.valuesTable(pairs, 2, "{text}")
				for i := range rest[:n] {
					r := &rest[i]
					for _, k := range r.keys[:kept(r)] {
						q.args = append(q.args, string(r.pid), k)
					}
				}
			}
			if _, err := ex.ExecContext(ctx, q.String(), q.args...); err != nil {
				return fail(err)
			}
			rest = rest[n:]
		}

		err = execChunks(ctx, s, ex, members, 2, tupleRows,
			`INSERT INTO {p}audience_members (audience_key, profile_id) VALUES `,
			` ON CONFLICT (audience_key, profile_id) DO NOTHING`,
			func(q *listStmt, m *membership) { q.args = append(q.args, m.key, string(m.pid)) })
		if err != nil {
			return fail(err)
		}
		return nil
	})
}

// execChunks runs a step of a batch write that carries w parameters per row:
// a statement per chunk of as many rows as batchParams() allows, head, the
// chunk's rows written by list, then tail; args appends a row's w arguments.
// UpdateBatch and PutBatch write most of their steps with it.
func execChunks[R any](ctx context.Context, s *Store, ex Executor, rows []R, w int, list func(q *listStmt, n, w int), head, tail string,
	args func(q *listStmt, row *R)) error {
	perStmt := s.batchParams() / w
	for rest := rows; len(rest) > 0; {
		n := min(len(rest), perStmt)
		q := s.newListStmt(head, w*n)
		list(q, n, w)
		if tail != "" {
			q.sql(tail)
		}
		for i := range rest[:n] {
			args(q, &rest[i])
		}
		if _, err := ex.ExecContext(ctx, q.String(), q.args...); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// tupleRows writes the rows of a chunk of execChunks as the tuples of an
// INSERT's VALUES.
func tupleRows(q *listStmt, n, w int) { q.tuples(n, w, "") }

// tupleRowsEndingIn is tupleRows with literal, SQL constants, after each
// tuple's parameters: columns every row of the statement has alike.
func tupleRowsEndingIn(literal string) func(q *listStmt, n, w int) {
	return func(q *listStmt, n, w int) { q.tuplesEndingIn(n, w, literal) }
}

// textTableRows writes the rows of a chunk of execChunks as a table of text
// values, for a row value IN.
func textTableRows(q *listStmt, n, w int) { q.valuesTable(n, w, "{text}") }

// badPostgresText names the first of an update's strings stored as text that
// PostgreSQL refuses (a NUL character, or invalid UTF-8), or returns "".
// Values and properties are stored as JSON, which escapes both.
func badPostgresText(u *profile.BatchUpdate) string {
	bad := badPostgresString
	switch {
	case bad(string(u.Profile)):
		return "the profile id"
	case bad(u.MessageID):
		return "MessageID"
	case bad(u.Metadata.FirstMessageID):
		return "Metadata.FirstMessageID"
	case bad(u.Metadata.LastMessageID):
		return "Metadata.LastMessageID"
	case u.Event != nil && bad(u.Event.Name):
		return "Event.Name"
	case u.Event != nil && bad(u.Event.Type):
		return "Event.Type"
	case u.Event != nil && bad(u.Event.Source):
		return "Event.Source"
	}
	for k, t := range u.Set {
		if bad(k) {
			return "a key of Set"
		}
		if bad(t.Source) {
			return "a Source in Set"
		}
	}
	for _, k := range u.Remove {
		if bad(k) {
			return "a key of Remove"
		}
	}
	return ""
}

// badPostgresString reports whether PostgreSQL's text refuses s: it holds a
// NUL character, or is not valid UTF-8.
func badPostgresString(s string) bool { return strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) }
