// Linked into export's test binary by the overlay: the JSON Schema validator
// of its schema tests, for the reason testdata/testdeps/sqlstore.go gives.

package export_test

import "github.com/gdprkit/privacy/internal/testdeps/schema"

func init() { newSchemaValidator = schema.Compile }
