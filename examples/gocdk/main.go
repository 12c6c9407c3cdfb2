// Command gocdk runs gdprkit/privacy with its data keys wrapped by a Go CDK
// keeper (gocloud.dev/secrets), over SQLite, the keyring in a database of
// its own. Here the keeper is Go CDK's local one ("base64key://"); the same
// code takes AWS KMS, GCP KMS, Azure Key Vault or Vault by changing the URL
// (and the driver imported): "awskms://...", "gcpkms://...",
// "azurekeyvault://...", "hashivault://...". It is a module of its own, so
// that the library does not depend on Go CDK.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"

	"gocloud.dev/secrets"
	_ "gocloud.dev/secrets/localsecrets" // base64key://
	_ "modernc.org/sqlite"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/sqlstore"
)

// keeperURL names the key encryption key. A fixed one, for the example;
// in production it names the key management service's key, and nothing
// secret is in the URL.
const keeperURL = "base64key://smGbjm71Nxd1Ig5FS0wj9SlbzAIrnolCz9bQQ6uAhl4="

func main() {
	dir, err := os.MkdirTemp("", "gdprkit-gocdk")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(context.Background(), os.Stdout, dir); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, dir string) error {
	keeper, err := secrets.OpenKeeper(ctx, keeperURL)
	if err != nil {
		return err
	}
	defer keeper.Close()
	data, err := openStore(ctx, filepath.Join(dir, "data.db"))
	if err != nil {
		return err
	}
	keys, err := openStore(ctx, filepath.Join(dir, "keys.db"))
	if err != nil {
		return err
	}
	c, err := privacy.New(
		privacy.WithBackends(data),
		privacy.WithKeyring(keys.Keyring()), // a backup of data.db holds no key
		privacy.WithKeeper(keeper),          // *secrets.Keeper is a keyring.Keeper
		privacy.WithKey([]byte("the hashes' key: 32 random bytes")),
	)
	if err != nil {
		return err
	}
	defer c.Close()

	ada := identity.ID{Type: identity.TypeUserID, Value: "ada"}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: at}); err != nil {
		return err
	}
	p, err := c.Profile(ctx, ada)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "plan, read back through the keeper: %v\n", p.Traits["plan"].Value)
	entry, err := keys.Keyring().Get(ctx, p.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "ada's data key is kept wrapped by the keeper: %v\n", len(entry.Wrapped) > 0)

	r, err := c.Erase(ctx, ada)
	if err != nil {
		return err
	}
	_, err = keys.Keyring().Get(ctx, p.ID)
	fmt.Fprintf(w, "erasure %s; ada's data key destroyed: %v\n", r.Status, errors.Is(err, keyring.ErrNotFound))
	return nil
}

// openStore opens (creating) a SQLite database as a migrated sqlstore.Store.
func openStore(ctx context.Context, path string) (*sqlstore.Store, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	st, err := sqlstore.New(db, sqlstore.SQLite)
	if err != nil {
		return nil, err
	}
	return st, st.Migrate(ctx)
}
