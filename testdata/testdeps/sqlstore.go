// Linked into sqlstore's test binary by the overlay (see overlay.json and
// internal/testdeps): its database drivers.
//
// Why an overlay: `go mod tidy` in a module that imports a package also loads
// that package's tests. Were this import in a _test.go file of sqlstore, every
// module importing sqlstore would download SQLite (modernc.org, hundreds of
// megabytes) and pgx, whichever driver it uses itself. A file under testdata
// is ignored by the go command and by tidy; the overlay puts it into the
// package for our own test runs only.

package sqlstore

import _ "github.com/gdprkit/privacy/internal/testdeps/drivers"
