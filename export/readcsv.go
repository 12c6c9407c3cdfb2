package export

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// readCSV reads the CSV format: the zip archive whole (zip needs random
// access; r bounds it), then each CSV file in turn, streamed and hashed.
func readCSV(r io.Reader, maxSize int64) (*Package, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: csv: not a zip archive: %w", ErrInvalid, err)
	}
	files := make(map[string]*zip.File, len(zr.File))
	for _, f := range zr.File {
		if f.Name != manifestName && tableNamed(f.Name) == nil {
			return nil, fmt.Errorf("%w: csv: unexpected file %.80q in the archive", ErrInvalid, f.Name)
		}
		if files[f.Name] != nil {
			return nil, fmt.Errorf("%w: csv: %s appears twice in the archive", ErrInvalid, f.Name)
		}
		files[f.Name] = f
	}
	cr := &csvReader{budget: maxSize}
	if err := cr.readManifest(files); err != nil {
		return nil, err
	}
	for _, t := range csvTables {
		if files[t.name] == nil { // an optional file the archive lacks, as readManifest allowed
			continue
		}
		if err := cr.readTable(files[t.name], t); err != nil {
			return nil, err
		}
	}
	if !time.Time(cr.manifest.GeneratedAt).Equal(cr.p.GeneratedAt) {
		return nil, fmt.Errorf("%w: csv: manifest.json's generated_at %v differs from profile.csv's %v",
			ErrInvalid, time.Time(cr.manifest.GeneratedAt), cr.p.GeneratedAt)
	}
	cr.p.Schema = SchemaVersion
	return &cr.p, nil
}

func tableNamed(name string) *table {
	for _, t := range csvTables {
		if t.name == name {
			return t
		}
	}
	return nil
}

// csvReader reads the files of a CSV export into p.
type csvReader struct {
	p        Package
	order    order
	manifest manifest
	files    map[string]manifestFile
	budget   int64          // uncompressed bytes left to read
	requests map[string]int // request id to its index in p.Requests, for outcomes
}

func (cr *csvReader) readManifest(files map[string]*zip.File) error {
	f := files[manifestName]
	if f == nil {
		return fmt.Errorf("%w: csv: the archive has no %s", ErrInvalid, manifestName)
	}
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("%w: csv: %s: %w", ErrInvalid, manifestName, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(&budgetReader{rc, &cr.budget})
	dec.DisallowUnknownFields()
	m := &cr.manifest
	if err := dec.Decode(m); err != nil {
		return fmt.Errorf("%w: csv: %s: %w", ErrInvalid, manifestName, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if errors.Is(err, errTooLarge) {
			return err
		}
		return fmt.Errorf("%w: csv: %s: data after the manifest", ErrInvalid, manifestName)
	}
	if m.Schema != SchemaVersion {
		return fmt.Errorf("%w: csv: %s: %w", ErrInvalid, manifestName, schemaError(m.Schema))
	}
	cr.files = make(map[string]manifestFile, len(m.Files))
	for _, mf := range m.Files {
		if tableNamed(mf.Name) == nil {
			return fmt.Errorf("%w: csv: %s lists an unknown file %.80q", ErrInvalid, manifestName, mf.Name)
		}
		if _, dup := cr.files[mf.Name]; dup {
			return fmt.Errorf("%w: csv: %s lists %s twice", ErrInvalid, manifestName, mf.Name)
		}
		cr.files[mf.Name] = mf
	}
	for _, t := range csvTables {
		_, listed := cr.files[t.name]
		if t.optional && !listed && files[t.name] == nil {
			continue // an export from before the file was added: it has no rows
		}
		if !listed {
			return fmt.Errorf("%w: csv: %s does not list %s", ErrInvalid, manifestName, t.name)
		}
		if files[t.name] == nil {
			return fmt.Errorf("%w: csv: the archive has no %s", ErrInvalid, t.name)
		}
	}
	return nil
}

// readTable reads one CSV file, checking its SHA-256 and row count against the
// manifest.
func (cr *csvReader) readTable(f *zip.File, t *table) error {
	mf := cr.files[t.name]
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("%w: csv: %s: %w", ErrInvalid, t.name, err)
	}
	defer rc.Close()
	h := sha256.New()
	src := bufio.NewReader(io.TeeReader(&budgetReader{rc, &cr.budget}, h))
	rows, err := cr.parseTable(&csvParser{r: src, line: 1}, t)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return err
		}
		// A file that does not match its hash was changed: say that, rather
		// than what the change broke.
		if _, derr := io.Copy(io.Discard, src); derr == nil && hex.EncodeToString(h.Sum(nil)) != mf.SHA256 {
			return cr.shaError(t, h.Sum(nil))
		}
		return fmt.Errorf("%w: csv: %s %w", ErrInvalid, t.name, err)
	}
	if sum := h.Sum(nil); hex.EncodeToString(sum) != mf.SHA256 {
		return cr.shaError(t, sum)
	}
	if rows != mf.Rows {
		return fmt.Errorf("%w: csv: %s has %d rows, %s says %d", ErrInvalid, t.name, rows, manifestName, mf.Rows)
	}
	if t == profileTable && rows != 1 {
		return fmt.Errorf("%w: csv: %s has %d rows, want 1", ErrInvalid, t.name, rows)
	}
	return nil
}

func (cr *csvReader) shaError(t *table, sum []byte) error {
	return fmt.Errorf("%w: csv: %s: SHA-256 %x does not match %s's %.64q: the file was changed",
		ErrInvalid, t.name, sum, manifestName, cr.files[t.name].SHA256)
}

// parseTable reads the header row and the rows of t, in t's column order
// whatever the file's.
func (cr *csvReader) parseTable(p *csvParser, t *table) (rows int, err error) {
	header, _, err := p.next()
	if err == io.EOF {
		return 0, errors.New("is empty: it has no header row")
	}
	if err != nil {
		return 0, err
	}
	idx := make([]int, len(t.cols))
	for i := range idx {
		idx[i] = -1
	}
	for i, name := range header {
		c := indexOf(t.cols, name)
		if c < 0 {
			return 0, fmt.Errorf("line 1: unknown column %.40q", name)
		}
		if idx[c] >= 0 {
			return 0, fmt.Errorf("line 1: column %q appears twice", name)
		}
		idx[c] = i
	}
	for c, i := range idx {
		if i < 0 && c < t.required {
			return 0, fmt.Errorf("line 1: column %q is missing", t.cols[c])
		}
	}
	vals := make([]string, len(t.cols))
	for {
		rec, line, err := p.next()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		if len(rec) != len(header) {
			return rows, fmt.Errorf("line %d: %d fields, the header has %d", line, len(rec), len(header))
		}
		for c, i := range idx {
			vals[c] = ""
			if i >= 0 {
				vals[c] = rec[i]
			}
		}
		if err := cr.row(t, vals); err != nil {
			return rows, fmt.Errorf("line %d: %w", line, err)
		}
		rows++
	}
}

func indexOf(s []string, x string) int {
	for i, e := range s {
		if e == x {
			return i
		}
	}
	return -1
}

// row adds one row of t, its values in t's column order.
func (cr *csvReader) row(t *table, v []string) error {
	var c cells
	p := &cr.p
	switch t {
	case profileTable:
		if v[0] != SchemaVersion {
			return schemaError(v[0])
		}
		p.GeneratedAt = c.time("generated_at", v[1])
		p.RequestID = v[2]
		p.Profile.ID = identity.ProfileID(v[3])
		p.Profile.Metadata = profile.Metadata{
			CreatedAt:      c.time("created_at", v[4]),
			UpdatedAt:      c.time("updated_at", v[5]),
			Version:        c.uint("version", v[6]),
			FirstMessageID: v[7],
			LastMessageID:  v[8],
			FirstSeen:      c.time("first_seen", v[9]),
			LastSeen:       c.time("last_seen", v[10]),
		}
		p.Suppression.Suppressed = c.bool("suppressed", v[11])
		// Empty in an export from before consent was kept, which lacks
		// the columns, and when none was collected.
		var cats map[string]profile.ConsentStatus
		if v[12] != "" {
			cats = c.categories("consent", v[12])
		}
		p.Profile.Metadata.Consent = profile.NewConsent(cats, c.time("consent_updated_at", v[13]), nil)
		return c.add(&cr.order, secHeader, "")
	case identifiersTable:
		id := profile.ExternalID{
			ID:             identity.ID{Type: v[0], Value: v[1]},
			CreatedAt:      c.time("created_at", v[2]),
			FirstMessageID: v[3],
		}
		if err := c.add(&cr.order, secIdentifiers, ""); err != nil {
			return err
		}
		p.Profile.ExternalIDs = append(p.Profile.ExternalIDs, id)
	case traitsTable:
		t := profile.Trait{Value: c.value("value", v[1]), Source: v[2], UpdatedAt: c.time("updated_at", v[3])}
		if err := c.add(&cr.order, secTraits, v[0]); err != nil {
			return err
		}
		if p.Profile.Traits == nil {
			p.Profile.Traits = make(map[string]profile.Trait)
		}
		p.Profile.Traits[v[0]] = t
	case eventsTable:
		e := profile.Event{
			MessageID:  v[0],
			Name:       v[1],
			Timestamp:  c.time("timestamp", v[2]),
			ReceivedAt: c.time("received_at", v[3]),
		}
		if v[4] != "" {
			e.Properties = c.object("properties", v[4])
		}
		e.Type, e.Source = v[5], v[6]
		if v[7] != "" {
			e.Context = c.object("context", v[7])
		}
		if err := c.add(&cr.order, secEvents, ""); err != nil {
			return err
		}
		p.Events = append(p.Events, e)
	case audiencesTable:
		if err := c.add(&cr.order, secAudiences, v[0]); err != nil {
			return err
		}
		p.Audiences = append(p.Audiences, v[0])
	case requestsTable:
		q := Request{
			ID:              v[0],
			Type:            v[1],
			Status:          v[2],
			Reason:          v[3],
			Received:        c.time("received", v[4]),
			Due:             c.time("due", v[5]),
			Finished:        c.time("finished", v[6]),
			ExtensionReason: v[7],
			ProfileVersion:  c.uint("profile_version", v[8]),
		}
		if err := c.add(&cr.order, secRequests, q.ID); err != nil {
			return err
		}
		if cr.requests == nil {
			cr.requests = make(map[string]int)
		}
		cr.requests[q.ID] = len(p.Requests)
		p.Requests = append(p.Requests, q)
	case outcomesTable:
		o := Outcome{Kind: v[1], Name: v[2], Status: v[3], Err: v[4], Finished: c.time("finished", v[5])}
		if c.err != nil {
			return c.err
		}
		if err := checkOutcome(&o); err != nil {
			return err
		}
		i, ok := cr.requests[v[0]]
		if !ok {
			return fmt.Errorf("request_id %.80q is not in %s", v[0], requestsTable.name)
		}
		p.Requests[i].Outcomes = append(p.Requests[i].Outcomes, o)
	case recipientsTable:
		rc := Recipient{Name: v[0], FirstSent: c.time("first_sent", v[1]), LastSent: c.time("last_sent", v[2])}
		if err := c.add(&cr.order, secRecipients, ""); err != nil {
			return err
		}
		p.Recipients = append(p.Recipients, rc)
	case consentTable:
		ch := profile.ConsentChange{
			MessageID:  v[0],
			Type:       v[1],
			Event:      v[2],
			Source:     v[3],
			Timestamp:  c.time("timestamp", v[4]),
			ReceivedAt: c.time("received_at", v[5]),
		}
		if v[6] != "" { // empty: no preferences; "{}": an empty set of them
			ch.Preferences = c.preferences("preferences", v[6])
		}
		if err := c.add(&cr.order, secConsent, ""); err != nil {
			return err
		}
		p.ConsentHistory = append(p.ConsentHistory, ch)
	case accountsTable:
		l := profile.AccountLink{GroupID: v[0], FirstLinked: c.time("first_linked", v[1]), LastLinked: c.time("last_linked", v[2])}
		if err := c.add(&cr.order, secAccounts, v[0]); err != nil {
			return err
		}
		p.Accounts = append(p.Accounts, l)
	}
	return nil
}

// cells parses a row's values; the first error sticks and names its column.
type cells struct{ err error }

func (c *cells) fail(col string, err error) {
	if c.err == nil {
		c.err = fmt.Errorf("%s: %w", col, err)
	}
}

func (c *cells) time(col, s string) time.Time {
	t, err := parseTime(s)
	if err != nil {
		c.fail(col, err)
	}
	return t
}

func (c *cells) uint(col, s string) uint64 {
	u, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		c.fail(col, fmt.Errorf("a value of %d bytes is not an unsigned integer", len(s)))
	}
	return u
}

func (c *cells) bool(col, s string) bool {
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	c.fail(col, fmt.Errorf("a value of %d bytes is neither true nor false", len(s)))
	return false
}

// categories decodes a consent column: a JSON object of statuses.
func (c *cells) categories(col, s string) map[string]profile.ConsentStatus {
	m, err := decodeCategories(col, []byte(s))
	if err != nil && c.err == nil {
		c.err = err // it names col
	}
	return m
}

// preferences decodes a consent change's preferences column: a JSON object
// of booleans.
func (c *cells) preferences(col, s string) map[string]bool {
	m, err := decodePreferences(col, []byte(s))
	if err != nil && c.err == nil {
		c.err = err // it names col
	}
	return m
}

// value decodes a JSON-encoded column into NormalizeValue's canonical form.
func (c *cells) value(col, s string) any {
	return decodeColumn[any](c, col, s, "not JSON")
}

// object decodes a JSON-encoded object (or null) column.
func (c *cells) object(col, s string) map[string]any {
	return decodeColumn[map[string]any](c, col, s, "not a JSON object")
}

// decodeColumn is value and object, which differ only in T: it decodes a
// JSON-encoded column into a T and checks that it is in NormalizeValue's
// canonical form. A failure is recorded in c; for a column that does not
// decode, notT says what it is not, and the zero T is returned.
func decodeColumn[T any](c *cells, col, s, notT string) T {
	var v T
	if _, err := profile.UnmarshalNumbers([]byte(s), &v); err != nil {
		c.fail(col, fmt.Errorf("%s: %w", notT, err))
		var zero T
		return zero
	}
	n, err := profile.NormalizeValue(col, v) // numbers exact, depth bounded
	if err != nil {
		c.fail(col, err)
		return v
	}
	if n == nil { // JSON null
		var zero T
		return zero
	}
	return n.(T)
}

// add checks the row's order (after its cells) and records it.
func (c *cells) add(o *order, s section, key string) error {
	if c.err != nil {
		return c.err
	}
	if err := o.check(s, key); err != nil {
		return err
	}
	o.add(s, key)
	return nil
}

// budgetReader reads from r while *left, shared by all the archive's files,
// lasts, and fails with errTooLarge after.
type budgetReader struct {
	r    io.Reader
	left *int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	*b.left -= int64(n)
	if *b.left < 0 {
		return 0, errTooLarge
	}
	return n, err
}

// csvParser reads the CSV the Writer writes (RFC 4180 with LF line ends): a
// field is quoted when it holds a comma, quote or line break, and a quote in it
// is doubled. Unlike encoding/csv it keeps a CR LF inside a quoted field as it
// is, so every string reads back exactly. It is strict: a bare quote or CR in an
// unquoted field is an error, and every field must be UTF-8.
type csvParser struct {
	r      *bufio.Reader
	line   int // the line the next record begins on
	field  []byte
	fields []string
}

// next returns the next record and the line it begins on, or io.EOF.
func (p *csvParser) next() ([]string, int, error) {
	start := p.line
	if _, err := p.r.Peek(1); err != nil {
		return nil, 0, err
	}
	p.fields = p.fields[:0]
	for {
		p.field = p.field[:0]
		c, err := p.r.ReadByte()
		if err == nil && c == '"' {
			for {
				if c, err = p.r.ReadByte(); err != nil {
					if err == io.EOF {
						return nil, start, fmt.Errorf("line %d: a quoted field is not closed", start)
					}
					return nil, start, err
				}
				if c == '"' {
					if c, err = p.r.ReadByte(); err != nil || c != '"' {
						break // the closing quote; c is what follows
					}
				} else if c == '\n' {
					p.line++
				}
				p.field = append(p.field, c)
			}
			if err == nil && c != ',' && c != '\n' {
				return nil, start, fmt.Errorf("line %d: %q after a closing quote", p.line, c)
			}
		} else {
			for err == nil && c != ',' && c != '\n' {
				if c == '"' || c == '\r' {
					return nil, start, fmt.Errorf("line %d: a bare %q in an unquoted field", p.line, c)
				}
				p.field = append(p.field, c)
				c, err = p.r.ReadByte()
			}
		}
		if err != nil && err != io.EOF {
			return nil, start, err
		}
		if !utf8.Valid(p.field) {
			return nil, start, fmt.Errorf("line %d: field %d is not valid UTF-8", p.line, len(p.fields)+1)
		}
		p.fields = append(p.fields, string(p.field))
		if err == io.EOF || c == '\n' {
			if err == nil {
				p.line++
			}
			return p.fields, start, nil
		}
	}
}
