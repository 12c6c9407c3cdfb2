package segmentapi

import (
	"testing"

	"github.com/gdprkit/privacy/internal/testdeps"
)

// TestMain needs the database drivers of testdata/testdeps/overlay.json.
func TestMain(m *testing.M) { testdeps.Main(m, "segmentapi", testdeps.MissingDrivers()) }
