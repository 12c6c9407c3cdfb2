// Package testdeps is the TestMain of the packages whose tests need what
// only our own test runs link in: the database drivers (sqlstore,
// segmentapi) and a JSON Schema validator (export). Those come through
// `go test -overlay=testdata/testdeps/overlay.json`, not through imports in
// _test.go files, so that a module importing this library does not download
// them (`go mod tidy` loads the tests of the packages a module imports):
// see testdata/testdeps/sqlstore.go. The overlay's files import the
// subpackages drivers and schema, which hold those imports; no visible file
// imports them, so no importer loads them, while go.mod keeps their
// versions. Without the overlay, Main refuses to run the tests and says how
// to run them, rather than letting each fail on its own.
package testdeps
