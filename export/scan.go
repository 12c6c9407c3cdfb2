package export

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/gdprkit/privacy/profile"
)

// DefaultMaxRecord is the longest NDJSON record (line) a Scanner, and Read,
// takes: 4 MiB, room for a trait or an event of the largest size a
// Controller's limits allow. A longer one is refused as soon as it is seen to
// be longer, before it is decoded.
const DefaultMaxRecord = 4 << 20

// RecordKind is what an NDJSON record holds.
type RecordKind string

// The kinds of record, in the order an export has them.
const (
	KindHeader     RecordKind = "header"
	KindIdentifier RecordKind = "identifier"
	KindTrait      RecordKind = "trait"
	KindEvent      RecordKind = "event"
	KindAudience   RecordKind = "audience"
	KindRequest    RecordKind = "request"
	KindRecipient  RecordKind = "recipient"
	// KindConsentChange is one change of the person's consent, as
	// Package.ConsentHistory holds it.
	KindConsentChange RecordKind = "consent_change"
	// KindAccount is one account the person is linked to, as
	// Package.Accounts holds it.
	KindAccount RecordKind = "account"
)

// Record is one record of an NDJSON export: Kind says which of its fields is
// set.
type Record struct {
	Kind       RecordKind
	Header     Header             // KindHeader
	Identifier profile.ExternalID // KindIdentifier
	TraitKey   string             // KindTrait
	Trait      profile.Trait      // KindTrait
	Event      profile.Event      // KindEvent
	Audience   string             // KindAudience
	Request    Request            // KindRequest
	Recipient  Recipient          // KindRecipient
	// ConsentChange is set for KindConsentChange.
	ConsentChange profile.ConsentChange
	// Account is set for KindAccount.
	Account profile.AccountLink
}

// Scanner reads an NDJSON export one record at a time, checking it as Read
// does (kinds, section and key order, the end record's counts, every value),
// and holding one record at a time: its memory is a small multiple of the
// longest record, whatever the export's size. It is how an export too large
// to hold is read, or one from a source that is not trusted.
//
//	s := export.NewScanner(r, 0)
//	for s.Scan() {
//		rec := s.Record()
//		...
//	}
//	if err := s.Err(); err != nil { ... }
type Scanner struct {
	br        *bufio.Reader
	maxRecord int
	line      []byte
	n         int // lines read
	nr        ndReader
	rec       Record
	err       error
	done      bool
}

// NewScanner returns a Scanner of the NDJSON export r. maxRecord bounds a
// record's length in bytes; 0 or less means DefaultMaxRecord.
func NewScanner(r io.Reader, maxRecord int) *Scanner {
	if maxRecord <= 0 {
		maxRecord = DefaultMaxRecord
	}
	return &Scanner{br: bufio.NewReaderSize(r, 64<<10), maxRecord: maxRecord}
}

// Scan reads the next record, which Record then returns. It returns false at
// the end of the export, after the end record checked the counts, or at the
// first error, which Err returns.
func (s *Scanner) Scan() bool {
	if s.done {
		return false
	}
	for {
		var err error
		s.line, err = readLine(s.br, s.line[:0], s.maxRecord)
		switch {
		case err == io.EOF:
			s.done = true
			switch {
			case s.n == 0:
				s.err = fmt.Errorf("%w: ndjson: the input is empty", ErrInvalid)
			case s.nr.order.sec != secEnd:
				s.err = fmt.Errorf("%w: ndjson: no end record after line %d: the export is truncated", ErrInvalid, s.n)
			}
			return false
		case errors.Is(err, errLineTooLong):
			s.done = true
			s.err = fmt.Errorf("%w: %w: ndjson line %d is longer than %d bytes", ErrInvalid, ErrTooLarge, s.n+1, s.maxRecord)
			return false
		case err != nil:
			s.done = true
			s.err = err
			return false
		}
		s.n++
		if s.nr.order.sec == secEnd {
			s.done = true
			s.err = fmt.Errorf("%w: ndjson line %d: data after the end record", ErrInvalid, s.n)
			return false
		}
		s.rec = Record{}
		end, err := s.nr.record(s.line, &s.rec)
		if err != nil {
			s.done = true
			s.err = fmt.Errorf("%w: ndjson line %d: %w", ErrInvalid, s.n, err)
			return false
		}
		if !end {
			return true
		}
	}
}

// Record returns the record the last Scan read.
func (s *Scanner) Record() Record { return s.rec }

// Err returns the error that stopped Scan, or nil at the end of a whole
// export.
func (s *Scanner) Err() error { return s.err }

// errLineTooLong is what readLine returns for a line longer than its bound.
var errLineTooLong = errors.New("line too long")

// add adds a record to p, as Read builds its Package.
func (r *Record) addTo(p *Package) {
	switch r.Kind {
	case KindHeader:
		h := &r.Header
		p.GeneratedAt, p.RequestID, p.Profile.ID = h.GeneratedAt, h.RequestID, h.ProfileID
		p.Profile.Metadata, p.Suppression = h.Metadata, h.Suppression
	case KindIdentifier:
		p.Profile.ExternalIDs = append(p.Profile.ExternalIDs, r.Identifier)
	case KindTrait:
		if p.Profile.Traits == nil {
			p.Profile.Traits = make(map[string]profile.Trait)
		}
		p.Profile.Traits[r.TraitKey] = r.Trait
	case KindEvent:
		p.Events = append(p.Events, r.Event)
	case KindAudience:
		p.Audiences = append(p.Audiences, r.Audience)
	case KindRequest:
		p.Requests = append(p.Requests, r.Request)
	case KindRecipient:
		p.Recipients = append(p.Recipients, r.Recipient)
	case KindConsentChange:
		p.ConsentHistory = append(p.ConsentHistory, r.ConsentChange)
	case KindAccount:
		p.Accounts = append(p.Accounts, r.Account)
	}
}
