package export

import "strings"

// table is one CSV file of the CSV format and its columns, in the order the
// Writer writes them. Read finds columns by name, so their order may differ.
type table struct {
	name   string
	cols   []string
	header string // the header row
	// required is how many of cols, the first ones, a file must have: the
	// others were added later, and an older export lacks them.
	required int
	// optional says the file itself was added after the format's first
	// version: an older archive lacks it and its manifest does not list it,
	// and Read takes that as a file without rows. An archive that has it
	// must list it, and the other way round.
	optional bool
}

func newTable(name string, cols ...string) *table {
	return &table{name: name, cols: cols, header: strings.Join(cols, ",") + "\n", required: len(cols)}
}

// since adds columns added to t after its first version: Read takes a file
// without them, as empty.
func (t *table) since(cols ...string) *table {
	t.cols = append(t.cols, cols...)
	t.header = strings.Join(t.cols, ",") + "\n"
	return t
}

// addedLater marks t as a file added after the format's first version (see
// table.optional).
func (t *table) addedLater() *table {
	t.optional = true
	return t
}

// The columns here are the JSON names of the same fields.
var (
	profileTable = newTable("profile.csv", "schema", "generated_at", "request_id", "profile_id",
		"created_at", "updated_at", "version", "first_message_id", "last_message_id",
		"first_seen", "last_seen", "suppressed").since("consent", "consent_updated_at")
	identifiersTable = newTable("identifiers.csv", "type", "value", "created_at", "first_message_id")
	traitsTable      = newTable("traits.csv", "key", "value", "source", "updated_at")
	eventsTable      = newTable("events.csv", "message_id", "name", "timestamp", "received_at", "properties").since("type", "source", "context")
	audiencesTable   = newTable("audiences.csv", "key")
	requestsTable    = newTable("requests.csv", "id", "type", "status", "reason", "received", "due",
		"finished", "extension_reason", "profile_version")
	outcomesTable   = newTable("outcomes.csv", "request_id", "kind", "name", "status", "error", "finished")
	recipientsTable = newTable("recipients.csv", "name", "first_sent", "last_sent")
	consentTable    = newTable("consent_history.csv", "message_id", "type", "event", "source",
		"timestamp", "received_at", "preferences").addedLater()
	accountsTable = newTable("accounts.csv", "group_id", "first_linked", "last_linked").addedLater()
)

// sectionTables maps each section to its file; outcomes.csv follows requests.csv.
var sectionTables = [secEnd]*table{
	secHeader:      profileTable,
	secIdentifiers: identifiersTable,
	secTraits:      traitsTable,
	secEvents:      eventsTable,
	secAudiences:   audiencesTable,
	secRequests:    requestsTable,
	secRecipients:  recipientsTable,
	secConsent:     consentTable,
	secAccounts:    accountsTable,
}

// csvTables are the CSV files in the order they appear in the archive, before
// the manifest.
var csvTables = []*table{profileTable, identifiersTable, traitsTable, eventsTable,
	audiencesTable, requestsTable, outcomesTable, recipientsTable, consentTable, accountsTable}

// manifestName is the archive's last file: the schema version and each CSV
// file's name, SHA-256 and row count (data rows, not counting the header row).
const manifestName = "manifest.json"

// manifest is manifest.json, as Read decodes it.
type manifest struct {
	Schema      string         `json:"schema"`
	GeneratedAt jsonTime       `json:"generated_at"`
	Files       []manifestFile `json:"files"`
}

type manifestFile struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Rows   int    `json:"rows"`
}
