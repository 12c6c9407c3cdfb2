package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
)

var _ profile.TraitPicker = (*profileTx)(nil)

// PickTraits implements profile.TraitPicker: one query reads the named traits
// alone, where Get would read every trait of the profile. The collection path
// calls it on every event an audience counts.
func (tx *profileTx) PickTraits(ctx context.Context, pid identity.ProfileID, names []string, dst []any) ([]any, error) {
	if len(names) > maxListParams { // too many to bind: read the profile
		p, err := tx.Get(ctx, pid)
		if err != nil {
			return dst, err
		}
		for _, name := range names {
			var v any
			if t, ok := p.Traits[name]; ok {
				v = t.Value
			}
			dst = append(dst, v)
		}
		return dst, nil
	}
	start := len(dst)
	for range names {
		dst = append(dst, nil)
	}
	args := make([]any, 0, 1+len(names))
	args = append(args, string(pid))
	for _, name := range names {
		args = append(args, name)
	}
	join := "FALSE"
	if len(names) > 0 {
		join = `t.trait_key IN (` + placeholders(2, len(names)) + `)`
	}
	err := tx.run(ctx, func(ex Executor) error {
		rows, err := ex.QueryContext(ctx, tx.s.sql(`SELECT t.trait_key, t.value, t.sealed
			FROM {p}profiles p LEFT JOIN {p}profile_traits t ON t.profile_id = p.profile_id AND `+join+`
			WHERE p.profile_id = $1`), args...)
		if err != nil {
			return fmt.Errorf("sqlstore: reading traits of profile %s: %w", pid, err)
		}
		found, sealed := false, false
		type picked struct {
			key   string
			value sealedJSON
		}
		var got []picked
		for rows.Next() {
			found = true
			var key sql.NullString
			var v sealedJSON
			if err := rows.Scan(&key, &v.clear, &v.sealed); err != nil {
				rows.Close()
				return fmt.Errorf("sqlstore: reading traits of profile %s: %w", pid, err)
			}
			if !key.Valid {
				continue // the profile has none of them
			}
			sealed = sealed || v.sealed != nil
			got = append(got, picked{key.String, v})
		}
		if err := closeRows(rows); err != nil {
			return fmt.Errorf("sqlstore: reading traits of profile %s: %w", pid, err)
		}
		if !found {
			return notFound(pid)
		}
		var dks map[identity.ProfileID]*keyring.DataKey
		if sealed {
			if dks, err = tx.s.openingKeys(ctx, ex, []identity.ProfileID{pid}); err != nil {
				return err
			}
		}
		for _, g := range got {
			text, err := tx.s.openText(pid, dks[pid], traitField(g.key), g.value)
			if err != nil {
				return err
			}
			v, err := decodeValue(text)
			if err != nil {
				return fmt.Errorf("sqlstore: reading trait %q of profile %s: %w", g.key, pid, err)
			}
			for i, name := range names {
				if name == g.key {
					dst[start+i] = v
				}
			}
		}
		return nil
	})
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}
