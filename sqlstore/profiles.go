package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
)

// profileStore is the profile store: a row per profile (its metadata), per
// trait, and per recorded message. A message that carried an event has the
// event's columns set; those rows are the profile's events, indexed by
// (profile, timestamp, message id) for paging. Keeping message ids and events
// in one row makes a tracked message one insert that also de-duplicates it.
type profileStore struct{ base }

var _ profile.Store = (*profileStore)(nil)

func (ps *profileStore) Get(ctx context.Context, pid identity.ProfileID) (*profile.Profile, error) {
	return readKey(ctx, ps.s, nil, pid, profileGet)
}

func (ps *profileStore) Metadata(ctx context.Context, pid identity.ProfileID) (profile.Metadata, error) {
	return readKey(ctx, ps.s, nil, pid, profileMetadata)
}

func (ps *profileStore) Events(ctx context.Context, pid identity.ProfileID, q profile.EventQuery) (profile.EventPage, error) {
	var page profile.EventPage
	err := ps.s.read(ctx, func(ex Executor) (err error) {
		page, err = profileEvents(ctx, ps.s, ex, pid, q)
		return err
	})
	return page, err
}

func (ps *profileStore) IDs(ctx context.Context, after identity.ProfileID, limit int) ([]identity.ProfileID, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: IDs: limit %d, want at least 1", profile.ErrInvalid, limit)
	}
	out, err := readRows(ctx, ps.s, `SELECT profile_id FROM {p}profiles WHERE profile_id > $1 ORDER BY profile_id LIMIT $2`,
		[]any{string(after), limit}, scanProfileIDs)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: listing profiles: %w", err)
	}
	if out == nil {
		out = []identity.ProfileID{} // as MemStore: empty, not nil
	}
	return out, nil
}

func (ps *profileStore) Begin(ctx context.Context) (profile.Tx, error) {
	return beginTx(ctx, ps.s, profile.ErrTxDone, profile.ErrInvalid, func(p part) profile.Tx { return &profileTx{base: ps.base, part: p} })
}

// scanProfileIDs reads a column of profile ids and closes rows.
func scanProfileIDs(rows *sql.Rows) ([]identity.ProfileID, error) {
	var out []identity.ProfileID
	for rows.Next() {
		var pid string
		if err := rows.Scan(&pid); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, identity.ProfileID(pid))
	}
	return out, closeRows(rows)
}

const metadataColumns = `p.created_at, p.updated_at, p.version, p.first_message_id, p.last_message_id, p.first_seen, p.last_seen, p.recipients, p.consent, p.accounts`

// metaScan reads the metadata columns.
type metaScan struct {
	m          profile.Metadata
	version    int64
	recipients sql.NullString
	consent    sql.NullString
	accounts   sql.NullString
}

func (ms *metaScan) dest() []any {
	m := &ms.m
	return []any{scanTime(&m.CreatedAt), scanTime(&m.UpdatedAt), &ms.version, &m.FirstMessageID, &m.LastMessageID,
		scanTime(&m.FirstSeen), scanTime(&m.LastSeen), &ms.recipients, &ms.consent, &ms.accounts}
}

func (ms *metaScan) metadata() (profile.Metadata, error) {
	m := ms.m
	m.Version = uint64(ms.version)
	if ms.recipients.Valid {
		var err error
		if m.Recipients, err = decodeRecipients(ms.recipients.String); err != nil {
			return m, fmt.Errorf("stored recipients do not decode: %s", decodeFailure(err))
		}
	}
	if ms.consent.Valid {
		if err := json.Unmarshal([]byte(ms.consent.String), &m.Consent); err != nil {
			return m, fmt.Errorf("stored consent does not decode: %s", decodeFailure(err))
		}
	}
	if ms.accounts.Valid {
		if err := json.Unmarshal([]byte(ms.accounts.String), &m.Accounts); err != nil {
			return m, fmt.Errorf("stored account links do not decode: %s", decodeFailure(err))
		}
	}
	return m, nil
}

func notFound(pid identity.ProfileID) error {
	return fmt.Errorf("%w: profile %s", profile.ErrNotFound, pid)
}

func profileMetadata(ctx context.Context, s *Store, ex Executor, pid identity.ProfileID) (profile.Metadata, error) {
	var ms metaScan
	err := ex.QueryRowContext(ctx, s.sql(`SELECT `+metadataColumns+` FROM {p}profiles p WHERE p.profile_id = $1`),
		string(pid)).Scan(ms.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return profile.Metadata{}, notFound(pid)
	}
	if err != nil {
		return profile.Metadata{}, fmt.Errorf("sqlstore: reading profile %s: %w", pid, err)
	}
	m, err := ms.metadata()
	if err != nil {
		return profile.Metadata{}, fmt.Errorf("sqlstore: reading profile %s: %w", pid, err)
	}
	return m, nil
}

// profileGet reads the metadata and the traits in one query, then opens the
// sealed ones.
func profileGet(ctx context.Context, s *Store, ex Executor, pid identity.ProfileID) (*profile.Profile, error) {
	rows, err := ex.QueryContext(ctx, s.sql(`SELECT `+metadataColumns+`, t.trait_key, t.value, t.sealed, t.source, t.updated_at
		FROM {p}profiles p LEFT JOIN {p}profile_traits t ON t.profile_id = p.profile_id
		WHERE p.profile_id = $1`), string(pid))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading profile %s: %w", pid, err)
	}
	type storedTrait struct {
		key   string
		value sealedJSON
		t     profile.Trait
	}
	var p *profile.Profile
	var traits []storedTrait
	sealed := false
	for rows.Next() {
		var ms metaScan
		var key, source sql.NullString
		var st storedTrait
		if err := rows.Scan(append(ms.dest(), &key, &st.value.clear, &st.value.sealed, &source, scanTime(&st.t.UpdatedAt))...); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlstore: reading profile %s: %w", pid, err)
		}
		if p == nil {
			m, err := ms.metadata()
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlstore: reading profile %s: %w", pid, err)
			}
			p = &profile.Profile{ID: pid, Metadata: m}
		}
		if !key.Valid {
			continue // no traits
		}
		st.key, st.t.Source = key.String, source.String
		sealed = sealed || st.value.sealed != nil
		traits = append(traits, st)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("sqlstore: reading profile %s: %w", pid, err)
	}
	if p == nil {
		return nil, notFound(pid)
	}
	var dks map[identity.ProfileID]*keyring.DataKey
	if sealed {
		if dks, err = s.openingKeys(ctx, ex, []identity.ProfileID{pid}); err != nil {
			return nil, err
		}
	}
	for _, st := range traits {
		text, err := s.openText(pid, dks[pid], traitField(st.key), st.value)
		if err != nil {
			return nil, err
		}
		if st.t.Value, err = decodeValue(text); err != nil {
			return nil, fmt.Errorf("sqlstore: reading trait %q of profile %s: %w", st.key, pid, err)
		}
		if p.Traits == nil {
			p.Traits = map[string]profile.Trait{}
		}
		p.Traits[st.key] = st.t
	}
	return p, nil
}

// DeleteShredded implements profile.ShreddingTx. With keys, it deletes the
// profile, its traits and its events kept in clear (an index finds those
// without reading the sealed ones), and lists the profile in
// profile_purges: its sealed events, which no key opens once the erasure's
// keyring commit destroyed theirs, and its recorded message ids are left to
// Purge. Without keys it is Delete.
func (tx *profileTx) DeleteShredded(ctx context.Context, pid identity.ProfileID) error {
	if tx.s.keys() == nil {
		return tx.Delete(ctx, pid)
	}
	return deleteProfile(ctx, tx.s, &tx.part, pid, "profile",
		`INSERT INTO {p}profile_purges (profile_id) VALUES ($1) ON CONFLICT (profile_id) DO NOTHING`,
		`DELETE FROM {p}profile_messages WHERE profile_id = $1 AND sealed IS NULL AND ts IS NOT NULL`,
		`DELETE FROM {p}profile_traits WHERE profile_id = $1`,
		`DELETE FROM {p}profiles WHERE profile_id = $1`)
}

// purgeBatch is how many rows each of Purge's statements deletes: each is a
// transaction of its own, so none holds its locks or its WAL for long.
const purgeBatch = 10_000

var (
	_ profile.ShreddingTx = (*profileTx)(nil)
	_ profile.Purger      = (*profileStore)(nil)
)

// Purge implements profile.Purger: it deletes, purgeBatch rows a statement,
// the rows of each profile listed in profile_purges (of those of pids, when
// given), then the listing.
func (p *profileStore) Purge(ctx context.Context, pids []identity.ProfileID) (int64, error) {
	s := p.s
	ex := s.direct()
	listed, err := s.purgesListed(ctx, ex, pids)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, pid := range listed {
		k, err := s.purgeListed(ctx, ex, pid)
		n += k
		if err != nil {
			return n, fmt.Errorf("sqlstore: purging the rows of erased profile %s: %w", pid, err)
		}
	}
	return n, nil
}

// purgeListed purges one listed profile: batches until one deletes nothing
// (a batch cut short by another purger's deletes is no sign of the end),
// then the listing, unless rows are left (written meanwhile by a redo of
// the erasure, or another purger's batch not committed yet): then it goes
// round again, a few times, and fails rather than say it is done.
func (s *Store) purgeListed(ctx context.Context, ex Executor, pid identity.ProfileID) (int64, error) {
	var n int64
	for range purgeRounds {
		// Each batch only while the profile is still listed, its listing
		// locked for the statement: a key made again for the profile (which
		// purges it and drops the listing first, in its own transaction)
		// waits for the batch, or the batch finds no listing, and the rows
		// written after are never the purge's.
		share := ""
		if s.d == Postgres {
			share = " FOR SHARE"
		}
		whileListed := ` AND EXISTS (SELECT 1 FROM {p}profile_purges WHERE profile_id = $1` + share + `)`
		for _, q := range []string{
			`DELETE FROM {p}profile_messages WHERE profile_id = $1 AND message_id IN
				(SELECT message_id FROM {p}profile_messages WHERE profile_id = $1` + whileListed + ` LIMIT $2)`,
			`DELETE FROM {p}profile_traits WHERE profile_id = $1 AND trait_key IN
				(SELECT trait_key FROM {p}profile_traits WHERE profile_id = $1` + whileListed + ` LIMIT $2)`,
		} {
			for {
				k, err := rowsAffected(ex.ExecContext(ctx, s.sql(q), string(pid), purgeBatch))
				n += k
				if err != nil {
					return n, err
				}
				if k == 0 {
					break
				}
			}
		}
		k, err := rowsAffected(ex.ExecContext(ctx, s.sql(`DELETE FROM {p}profile_purges WHERE profile_id = $1
			AND NOT EXISTS (SELECT 1 FROM {p}profile_messages WHERE profile_id = $1)
			AND NOT EXISTS (SELECT 1 FROM {p}profile_traits WHERE profile_id = $1)`), string(pid)))
		if err != nil {
			return n, err
		}
		if k == 1 {
			return n, nil
		}
		var listed int
		if err := ex.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}profile_purges WHERE profile_id = $1`), string(pid)).Scan(&listed); err != nil {
			return n, err
		}
		if listed == 0 { // another purger finished it
			return n, nil
		}
		time.Sleep(10 * time.Millisecond) // another purger's batch, until it commits
	}
	return n, errors.New("rows are still left after the purge: another writer keeps adding them")
}

// purgeRounds bounds purgeListed's rounds.
const purgeRounds = 5

// rowsAffected returns the rows an Exec affected.
func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// purgesListed returns the profiles of pids listed in profile_purges, or
// every listed one when pids is empty.
func (s *Store) purgesListed(ctx context.Context, ex Executor, pids []identity.ProfileID) ([]identity.ProfileID, error) {
	var out []identity.ProfileID
	scan := func(rows *sql.Rows) error {
		var pid string
		if err := rows.Scan(&pid); err != nil {
			return err
		}
		out = append(out, identity.ProfileID(pid))
		return nil
	}
	if len(pids) > 0 {
		err := queryProfiles(ctx, s, ex, `SELECT profile_id FROM {p}profile_purges WHERE profile_id IN (`, "purges", pids, scan)
		return out, err
	}
	rows, err := ex.QueryContext(ctx, s.sql(`SELECT profile_id FROM {p}profile_purges ORDER BY profile_id`))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading the profiles to purge: %w", err)
	}
	for rows.Next() {
		if err := scan(rows); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlstore: reading the profiles to purge: %w", err)
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("sqlstore: reading the profiles to purge: %w", err)
	}
	return out, nil
}

func profileEvents(ctx context.Context, s *Store, ex Executor, pid identity.ProfileID, q profile.EventQuery) (profile.EventPage, error) {
	q, cur, err := q.Normalize()
	if err != nil {
		return profile.EventPage{}, err
	}
	if n := len(q.Include) + len(q.Exclude); n > maxListParams {
		return profile.EventPage{}, fmt.Errorf("%w: events query: %d event names in Include and Exclude, more than %d", profile.ErrInvalid, n, maxListParams)
	}
	var b strings.Builder
	args := []any{string(pid)}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	b.WriteString(`SELECT message_id, event_name, properties, sealed, ts, received_at, event_type, source FROM {p}profile_messages
		WHERE profile_id = $1 AND ts IS NOT NULL`)
	// Stored times are whole microseconds: "at or after t" is "at or after t
	// rounded up", and "before t" is "before t rounded up".
	if !q.Start.IsZero() {
		b.WriteString(" AND ts >= " + arg(s.tsCeil(q.Start)))
	}
	if !q.End.IsZero() {
		b.WriteString(" AND ts < " + arg(s.tsCeil(q.End)))
	}
	if len(q.Include) > 0 {
		b.WriteString(" AND event_name IN (" + placeholders(len(args)+1, len(q.Include)) + ")")
		for _, n := range q.Include {
			args = append(args, n)
		}
	}
	if len(q.Exclude) > 0 {
		b.WriteString(" AND event_name NOT IN (" + placeholders(len(args)+1, len(q.Exclude)) + ")")
		for _, n := range q.Exclude {
			args = append(args, n)
		}
	}
	op, order := ">", "ASC"
	if q.Sort == profile.Desc {
		op, order = "<", "DESC"
	}
	if q.Cursor != "" {
		// A row comparison: the index on (profile_id, ts, message_id) starts
		// the scan right after the cursor.
		b.WriteString(" AND (ts, message_id) " + op + " (" + arg(s.tsCeil(cur.Timestamp)) + ", " + arg(cur.MessageID) + ")")
	}
	b.WriteString(" ORDER BY ts " + order + ", message_id " + order + " LIMIT " + arg(q.Limit+1))
	rows, err := ex.QueryContext(ctx, s.sql(b.String()), args...)
	if err != nil {
		return profile.EventPage{}, fmt.Errorf("sqlstore: reading events of profile %s: %w", pid, err)
	}
	var page profile.EventPage
	var props []sealedJSON
	sealed := false
	for rows.Next() {
		var e profile.Event
		var v sealedJSON
		var typ, source sql.NullString
		if err := rows.Scan(&e.MessageID, &e.Name, &v.clear, &v.sealed, scanTime(&e.Timestamp), scanTime(&e.ReceivedAt), &typ, &source); err != nil {
			rows.Close()
			return profile.EventPage{}, fmt.Errorf("sqlstore: reading events of profile %s: %w", pid, err)
		}
		sealed = sealed || v.sealed != nil
		e.Type, e.Source = typ.String, source.String
		page.Events = append(page.Events, e)
		props = append(props, v)
	}
	if err := closeRows(rows); err != nil {
		return profile.EventPage{}, fmt.Errorf("sqlstore: reading events of profile %s: %w", pid, err)
	}
	var dks map[identity.ProfileID]*keyring.DataKey
	if sealed {
		if dks, err = s.openingKeys(ctx, ex, []identity.ProfileID{pid}); err != nil {
			return profile.EventPage{}, err
		}
	}
	for i := range page.Events {
		e := &page.Events[i]
		text, err := s.openText(pid, dks[pid], eventField(e.MessageID), props[i])
		if err != nil {
			return profile.EventPage{}, err
		}
		if e.Properties, e.Context, err = decodeEventText(text); err != nil {
			return profile.EventPage{}, fmt.Errorf("sqlstore: reading event %s of profile %s: %w", e.MessageID, pid, err)
		}
	}
	if len(page.Events) > q.Limit {
		page.Events = page.Events[:q.Limit]
		page.Next = profile.EncodeCursor(q.Sort, &page.Events[q.Limit-1])
	}
	if len(page.Events) == 0 {
		// Events exist only on stored profiles: only an empty page needs to
		// tell an unknown profile apart.
		var n int
		err := ex.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}profiles WHERE profile_id = $1`), string(pid)).Scan(&n)
		if err != nil {
			return profile.EventPage{}, fmt.Errorf("sqlstore: reading profile %s: %w", pid, err)
		}
		if n == 0 {
			return profile.EventPage{}, notFound(pid)
		}
	}
	return page, nil
}

type profileTx struct {
	base
	part
}

func (tx *profileTx) Get(ctx context.Context, pid identity.ProfileID) (*profile.Profile, error) {
	return readKey(ctx, tx.s, &tx.part, pid, profileGet)
}

func (tx *profileTx) Metadata(ctx context.Context, pid identity.ProfileID) (profile.Metadata, error) {
	return readKey(ctx, tx.s, &tx.part, pid, profileMetadata)
}

func (tx *profileTx) Events(ctx context.Context, pid identity.ProfileID, q profile.EventQuery) (profile.EventPage, error) {
	var page profile.EventPage
	err := tx.run(ctx, func(ex Executor) (err error) {
		page, err = profileEvents(ctx, tx.s, ex, pid, q)
		return err
	})
	return page, err
}

// encodedTrait is a trait ready to store.
type encodedTrait struct {
	key, value, source string
	updated            any
}

// checkUpdate checks what the database cannot hold and encodes the values, so
// that a bad update fails before it writes anything.
func (tx *profileTx) checkUpdate(pid identity.ProfileID, u *profile.Update) (traits []encodedTrait, props string, meta encodedMeta, err error) {
	if err := u.Validate(); err != nil {
		return nil, "", meta, err
	}
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("%w: update of profile %s: %s", profile.ErrInvalid, pid, fmt.Sprintf(format, a...))
	}
	m := &u.Metadata
	if err := checkVersion(m.Version); err != nil {
		return nil, "", meta, invalid("Metadata.%v", err)
	}
	for _, t := range []struct {
		name string
		t    time.Time
	}{{"CreatedAt", m.CreatedAt}, {"UpdatedAt", m.UpdatedAt}, {"FirstSeen", m.FirstSeen}, {"LastSeen", m.LastSeen}} {
		if err := checkTime("Metadata."+t.name, t.t); err != nil {
			return nil, "", meta, invalid("%v", err)
		}
	}
	for k, t := range u.Set {
		if err := checkTime("Set["+k+"].UpdatedAt", t.UpdatedAt); err != nil {
			return nil, "", meta, invalid("%v", err)
		}
		v, err := encodeJSON(t.Value)
		if err != nil {
			return nil, "", meta, invalid("trait %q is not a JSON value: %v", k, err)
		}
		traits = append(traits, encodedTrait{k, v, t.Source, tx.s.ts(t.UpdatedAt)})
	}
	if e := u.Event; e != nil {
		if err := checkTime("Event.Timestamp", e.Timestamp); err != nil {
			return nil, "", meta, invalid("%v", err)
		}
		if err := checkTime("Event.ReceivedAt", e.ReceivedAt); err != nil {
			return nil, "", meta, invalid("%v", err)
		}
		if props, err = encodeJSON(e.Properties); err != nil {
			return nil, "", meta, invalid("event properties are not JSON values: %v", err)
		}
		if e.Context != nil {
			text, _ := u.EncodedContext.JSONFor(e.Context) // the Controller's, when it encoded it checking it
			c := string(text)
			if c == "" {
				if c, err = encodeJSON(e.Context); err != nil {
					return nil, "", meta, invalid("event context is not a JSON value: %v", err)
				}
			}
			props = "[" + props + "," + c + "]" // see migration 0012
		}
	}
	if m.Recipients != nil {
		text, err := encodeRecipients(m.Recipients)
		if err != nil {
			return nil, "", meta, invalid("Metadata.Recipients: %v", err)
		}
		meta.recipients = text
	}
	if m.Consent.Collected() {
		b, err := json.Marshal(m.Consent)
		if err != nil {
			return nil, "", meta, invalid("Metadata.Consent: %v", err)
		}
		meta.consent = string(b)
	}
	if m.Accounts != nil {
		b, err := json.Marshal(m.Accounts)
		if err != nil {
			return nil, "", meta, invalid("Metadata.Accounts: %v", err)
		}
		meta.accounts = string(b)
	}
	return traits, props, meta, nil
}

func (tx *profileTx) Update(ctx context.Context, pid identity.ProfileID, u profile.Update) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	traits, props, meta, err := tx.checkUpdate(pid, &u)
	if err != nil {
		return err
	}
	return tx.run(ctx, func(ex Executor) error {
		s := tx.s
		fail := func(err error) error { return fmt.Errorf("sqlstore: updating profile %s: %w", pid, err) }
		var dk *keyring.DataKey
		if keys := s.keys(); keys != nil && (len(traits) > 0 || u.Event != nil) {
			dks, err := s.dataKeys(ctx, ex, keys, []identity.ProfileID{pid}, true)
			if err != nil {
				return fail(err)
			}
			dk = dks[pid]
		}
		if u.MessageID != "" {
			// Recording the message id first tells a duplicate without an
			// error, which would abort a PostgreSQL transaction: the insert
			// then affects no row, and nothing else is written.
			var name, propsArg, sealed, at, received, typ, source any
			if e := u.Event; e != nil {
				propsArg, sealed = sealText(dk, eventField(u.MessageID), props, nil)
				name, at, received = e.Name, s.ts(e.Timestamp), s.ts(e.ReceivedAt)
				typ, source = nullIfEmpty(e.Type), nullIfEmpty(e.Source)
			}
			res, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}profile_messages (profile_id, message_id, event_name, properties, sealed, ts, received_at, event_type, source)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (profile_id, message_id) DO NOTHING`),
				string(pid), u.MessageID, name, propsArg, sealed, at, received, typ, source)
			if err != nil {
				return fail(err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fail(err)
			} else if n == 0 {
				return fmt.Errorf("%w: message %s on profile %s", profile.ErrDuplicate, u.MessageID, pid)
			}
		}
		m := &u.Metadata
		_, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}profiles (profile_id, created_at, updated_at, version, first_message_id, last_message_id, first_seen, last_seen, recipients, consent, accounts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (profile_id) DO UPDATE SET created_at = excluded.created_at, updated_at = excluded.updated_at,
				version = excluded.version, first_message_id = excluded.first_message_id, last_message_id = excluded.last_message_id,
				first_seen = excluded.first_seen, last_seen = excluded.last_seen, recipients = excluded.recipients, consent = excluded.consent, accounts = excluded.accounts`),
			string(pid), s.ts(m.CreatedAt), s.ts(m.UpdatedAt), int64(m.Version), m.FirstMessageID, m.LastMessageID,
			s.ts(m.FirstSeen), s.ts(m.LastSeen), meta.recipients, meta.consent, meta.accounts)
		if err != nil {
			return fail(err)
		}
		for len(traits) > 0 {
			n := min(len(traits), chunk/5)
			var b strings.Builder
			args := []any{string(pid)}
			b.WriteString(`INSERT INTO {p}profile_traits (profile_id, trait_key, value, sealed, source, updated_at) VALUES `)
			for i, t := range traits[:n] {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "($1, %s)", placeholders(len(args)+1, 5))
				value, sealed := sealText(dk, traitField(t.key), t.value, sealedPlaceholder)
				args = append(args, t.key, value, sealed, t.source, t.updated)
			}
			b.WriteString(` ON CONFLICT (profile_id, trait_key) DO UPDATE SET value = excluded.value, sealed = excluded.sealed, source = excluded.source, updated_at = excluded.updated_at`)
			if _, err := ex.ExecContext(ctx, s.sql(b.String()), args...); err != nil {
				return fail(err)
			}
			traits = traits[n:]
		}
		for remove := u.Remove; len(remove) > 0; {
			n := min(len(remove), chunk)
			args := []any{string(pid)}
			for _, k := range remove[:n] {
				args = append(args, k)
			}
			q := `DELETE FROM {p}profile_traits WHERE profile_id = $1 AND trait_key IN (` + placeholders(2, n) + `)`
			if _, err := ex.ExecContext(ctx, s.sql(q), args...); err != nil {
				return fail(err)
			}
			remove = remove[n:]
		}
		return nil
	})
}

func (tx *profileTx) Merge(ctx context.Context, into, from identity.ProfileID) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if into == from {
		return fmt.Errorf("%w: cannot merge profile %s into itself", profile.ErrInvalid, into)
	}
	return tx.run(ctx, func(ex Executor) error {
		s := tx.s
		var n int
		if err := ex.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}profiles WHERE profile_id = $1`), string(into)).Scan(&n); err != nil {
			return fmt.Errorf("sqlstore: merging into profile %s: %w", into, err)
		}
		if n == 0 {
			return notFound(into)
		}
		if err := s.resealMoved(ctx, ex, into, from); err != nil {
			return fmt.Errorf("sqlstore: merging profile %s into %s: %w", from, into, err)
		}
		// from's messages (and so its events) move unless into recorded the
		// same message id; what is left of from goes.
		return s.execMerge(ctx, ex, into,
			stmt{`UPDATE {p}profile_messages AS t SET profile_id = $1 WHERE t.profile_id = $2 AND NOT EXISTS
				(SELECT 1 FROM {p}profile_messages m WHERE m.profile_id = $1 AND m.message_id = t.message_id)`,
				[]any{string(into), string(from)}},
			stmt{`DELETE FROM {p}profile_messages WHERE profile_id = $1`, []any{string(from)}},
			stmt{`DELETE FROM {p}profile_traits WHERE profile_id = $1`, []any{string(from)}},
			stmt{`DELETE FROM {p}profiles WHERE profile_id = $1`, []any{string(from)}})
	})
}

func (tx *profileTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	return deleteProfile(ctx, tx.s, &tx.part, pid, "profile",
		`DELETE FROM {p}profile_purges WHERE profile_id = $1`, // nothing is left to purge
		`DELETE FROM {p}profile_messages WHERE profile_id = $1`,
		`DELETE FROM {p}profile_traits WHERE profile_id = $1`,
		`DELETE FROM {p}profiles WHERE profile_id = $1`)
}
