// Linked into segmentapi's test binary by the overlay: its database drivers,
// for the reason testdata/testdeps/sqlstore.go gives.

package segmentapi

import _ "github.com/gdprkit/privacy/internal/testdeps/drivers"
