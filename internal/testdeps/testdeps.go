package testdeps

import (
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// Command is the test command that links them in, run from the repository
// root: the README's.
const Command = "go test -race -overlay=testdata/testdeps/overlay.json ./..."

// Drivers are the database drivers the overlay registers.
var Drivers = []string{"pgx", "sqlite"}

// MissingDrivers returns those of Drivers that are not registered.
func MissingDrivers() []string {
	have := sql.Drivers()
	var missing []string
	for _, name := range Drivers {
		if !slices.Contains(have, name) {
			missing = append(missing, name)
		}
	}
	return missing
}

// Main runs pkg's tests when nothing is missing, and otherwise exits with
// status 2 and a message naming what is missing and how to run them.
func Main(m *testing.M, pkg string, missing []string) {
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "%s's tests need %s, which only the overlay links in; run, from the repository root:\n\t%s\n",
			pkg, strings.Join(missing, ", "), Command)
		os.Exit(2)
	}
	os.Exit(m.Run())
}
