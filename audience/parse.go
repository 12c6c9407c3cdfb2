package audience

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxQueryLength bounds a query, in bytes.
const MaxQueryLength = 64 << 10

// maxNesting bounds how deeply parentheses and not may nest.
const maxNesting = 100

// A SyntaxError is a query that does not parse, with the position of the fault.
// It matches ErrInvalid.
type SyntaxError struct {
	Line, Col int // 1-based; Col counts runes
	Msg       string
}

// Error gives the position and what was expected.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("audience: line %d, col %d: %s", e.Line, e.Col, e.Msg)
}

// Is makes a SyntaxError match ErrInvalid.
func (e *SyntaxError) Is(target error) bool { return target == ErrInvalid }

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokIdent
	tokString
	tokNumber
	tokOp // = != < <= > >=
	tokLParen
	tokRParen
	tokComma
	tokDot
)

type token struct {
	kind      tokenKind
	text      string // identifiers, operators, and the decoded string of tokString
	num       float64
	line, col int
}

func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "the end of the query"
	case tokString:
		return "string " + literal(t.text)
	case tokNumber:
		return "number " + t.text
	}
	return "'" + t.text + "'"
}

type lexer struct {
	src       string
	pos       int
	line, col int
}

func (l *lexer) errorf(line, col int, format string, args ...any) error {
	return &SyntaxError{Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) advance(r rune, size int) {
	l.pos += size
	if r == '\n' {
		l.line++
		l.col = 1
	} else {
		l.col++
	}
}

func (l *lexer) next() (token, error) {
	for l.pos < len(l.src) {
		r, size := utf8.DecodeRuneInString(l.src[l.pos:])
		if !unicode.IsSpace(r) {
			break
		}
		l.advance(r, size)
	}
	t := token{line: l.line, col: l.col}
	if l.pos >= len(l.src) {
		return t, nil
	}
	r, size := utf8.DecodeRuneInString(l.src[l.pos:])
	switch {
	case r == utf8.RuneError && size == 1:
		return t, l.errorf(t.line, t.col, "invalid UTF-8")
	case r == '(' || r == ')' || r == ',' || r == '.':
		t.kind = map[rune]tokenKind{'(': tokLParen, ')': tokRParen, ',': tokComma, '.': tokDot}[r]
		t.text = string(r)
		l.advance(r, size)
		return t, nil
	case r == '=' || r == '<' || r == '>' || r == '!':
		op := string(r)
		l.advance(r, size)
		if l.pos < len(l.src) && l.src[l.pos] == '=' {
			op += "="
			l.advance('=', 1)
		}
		if op == "!" {
			return t, l.errorf(t.line, t.col, "unexpected '!': did you mean '!='?")
		}
		if op == "==" {
			op = "="
		}
		t.kind, t.text = tokOp, op
		return t, nil
	case r == '\'' || r == '"':
		return l.lexString(t, r, size)
	case r == '-' || r >= '0' && r <= '9':
		start := l.pos
		l.advance(r, size)
		for l.pos < len(l.src) && (l.src[l.pos] >= '0' && l.src[l.pos] <= '9' || l.src[l.pos] == '.') {
			l.advance(rune(l.src[l.pos]), 1)
		}
		t.kind, t.text = tokNumber, l.src[start:l.pos]
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return t, l.errorf(t.line, t.col, "malformed number %q", t.text)
		}
		t.num = f
		return t, nil
	case r == '_' || unicode.IsLetter(r):
		start := l.pos
		for l.pos < len(l.src) {
			r, size := utf8.DecodeRuneInString(l.src[l.pos:])
			if r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				break
			}
			l.advance(r, size)
		}
		t.kind, t.text = tokIdent, l.src[start:l.pos]
		return t, nil
	}
	return t, l.errorf(t.line, t.col, "unexpected character %q", r)
}

func (l *lexer) lexString(t token, quote rune, size int) (token, error) {
	l.advance(quote, size)
	var b strings.Builder
	for {
		if l.pos >= len(l.src) {
			return t, l.errorf(t.line, t.col, "string is not closed")
		}
		r, size := utf8.DecodeRuneInString(l.src[l.pos:])
		if r == utf8.RuneError && size == 1 {
			return t, l.errorf(l.line, l.col, "invalid UTF-8")
		}
		l.advance(r, size)
		switch r {
		case quote:
			t.kind, t.text = tokString, b.String()
			return t, nil
		case '\\':
			if l.pos >= len(l.src) {
				return t, l.errorf(t.line, t.col, "string is not closed")
			}
			r, size = utf8.DecodeRuneInString(l.src[l.pos:])
			if r == utf8.RuneError && size == 1 {
				return t, l.errorf(l.line, l.col, "invalid UTF-8")
			}
			l.advance(r, size)
		}
		b.WriteRune(r)
	}
}

// parser is a recursive-descent parser over the lexer's tokens, one token ahead.
type parser struct {
	lex     lexer
	tok     token
	depth   int
	inWhere bool
}

// Parse parses a query in the audience query language into its condition tree,
// or fails with a *SyntaxError (matching ErrInvalid) giving the line and column:
//
//	trait('plan') = 'pro' and not audience('churned')
//	event('Order Completed').where(property('total') >= 100).within(30 days).count() >= 2
//
// Trait and property conditions compare with =, !=, <, <=, >, >= (the ordered ones
// take numbers), contains (a string) or exists. Event conditions take .where(...),
// .within(N days|hours) or .in_between(A days, B days) (between B and A ago), and
// .count() compared with a whole number; without .count() they mean "at least one".
// Conditions combine with and, or, not and parentheses; and binds tighter than or.
func Parse(query string) (Condition, error) {
	if len(query) > MaxQueryLength {
		return nil, &SyntaxError{Line: 1, Col: 1, Msg: fmt.Sprintf("query is %d bytes, more than %d", len(query), MaxQueryLength)}
	}
	p := &parser{lex: lexer{src: query, line: 1, col: 1}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		return nil, p.errorf("empty query")
	}
	c, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.errorf("expected 'and', 'or' or the end of the query, found %s", p.tok.describe())
	}
	// The canonical rendering (what a Set keeps and a store reloads) can be longer
	// than the query, and must parse again.
	if n := len(c.String()); n > MaxQueryLength {
		return nil, &SyntaxError{Line: 1, Col: 1, Msg: fmt.Sprintf("query is %d bytes in canonical form, more than %d", n, MaxQueryLength)}
	}
	return c, nil
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) errorf(format string, args ...any) error {
	return &SyntaxError{Line: p.tok.line, Col: p.tok.col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) isKeyword(kw string) bool {
	return p.tok.kind == tokIdent && strings.EqualFold(p.tok.text, kw)
}

func (p *parser) expect(kind tokenKind, what string) (token, error) {
	t := p.tok
	if t.kind != kind {
		return t, p.errorf("expected %s, found %s", what, t.describe())
	}
	return t, p.advance()
}

func (p *parser) parseOr() (Condition, error) {
	return p.parseJoined("or", p.parseAnd, func(cs []Condition) Condition { return &OrCondition{Conditions: cs} })
}

func (p *parser) parseAnd() (Condition, error) {
	return p.parseJoined("and", p.parseUnary, func(cs []Condition) Condition { return &AndCondition{Conditions: cs} })
}

// parseJoined parses one or more operands joined by the keyword sep, the shape
// of both or and and: one operand is returned as it is, more are combined by
// join.
func (p *parser) parseJoined(sep string, operand func() (Condition, error), join func([]Condition) Condition) (Condition, error) {
	first, err := operand()
	if err != nil {
		return nil, err
	}
	cs := []Condition{first}
	for p.isKeyword(sep) {
		if err := p.advance(); err != nil {
			return nil, err
		}
		c, err := operand()
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	if len(cs) == 1 {
		return first, nil
	}
	return join(cs), nil
}

func (p *parser) parseUnary() (Condition, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxNesting {
		return nil, p.errorf("nested more than %d levels deep", maxNesting)
	}
	if p.isKeyword("not") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		c, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return &NotCondition{Condition: c}, nil
	}
	if p.tok.kind == tokLParen {
		if err := p.advance(); err != nil {
			return nil, err
		}
		c, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tokRParen, "')'"); err != nil {
			return nil, err
		}
		return c, nil
	}
	return p.parseCall()
}

// parseCall parses trait(...), property(...), event(...), audience(...) and
// consent(...).
func (p *parser) parseCall() (Condition, error) {
	fn := p.tok
	if fn.kind != tokIdent {
		return nil, p.errorf("expected a condition such as trait('name') = 'value', found %s", fn.describe())
	}
	name := strings.ToLower(fn.text)
	switch {
	case name == "property" && !p.inWhere:
		return nil, p.errorf("property(...) is only allowed inside event(...).where(...)")
	case name != "property" && p.inWhere:
		return nil, p.errorf("where(...) takes property conditions, not %s(...)", name)
	case name != "trait" && name != "property" && name != "event" && name != "audience" && name != "consent":
		return nil, p.errorf("unknown function %q: want trait, event, audience, consent or property", fn.text)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if _, err := p.expect(tokLParen, "'(' after "+name); err != nil {
		return nil, err
	}
	arg, err := p.expect(tokString, "a quoted name")
	if err != nil {
		return nil, err
	}
	if arg.text == "" {
		return nil, &SyntaxError{Line: arg.line, Col: arg.col, Msg: name + " name is empty"}
	}
	if _, err := p.expect(tokRParen, "')'"); err != nil {
		return nil, err
	}
	switch name {
	case "audience":
		return &AudienceCondition{Key: arg.text}, nil
	case "event":
		return p.parseEvent(arg.text)
	}
	op, operand, err := p.parseComparison(name + "(" + literal(arg.text) + ")")
	if err != nil {
		return nil, err
	}
	switch name {
	case "trait":
		return &TraitCondition{Name: arg.text, Op: op, Operand: operand}, nil
	case "consent":
		c := &ConsentCondition{Category: arg.text, Op: op, Operand: operand}
		if err := c.validate(); err != nil {
			return nil, &SyntaxError{Line: fn.line, Col: fn.col, Msg: err.Error()}
		}
		return c, nil
	}
	return &PropertyCondition{Name: arg.text, Op: op, Operand: operand}, nil
}

// parseComparison parses what follows trait(...) or property(...): an operator
// and a literal, "contains" and a string, or "exists".
func (p *parser) parseComparison(subject string) (Op, any, error) {
	at := p.tok
	var op Op
	switch {
	case p.tok.kind == tokOp:
		op = Op(p.tok.text)
	case p.isKeyword("contains"):
		op = Contains
	case p.isKeyword("exists"):
		op = Exists
	default:
		return "", nil, p.errorf("expected an operator (=, !=, <, <=, >, >=, contains, exists) after %s, found %s", subject, p.tok.describe())
	}
	if err := p.advance(); err != nil {
		return "", nil, err
	}
	if op == Exists {
		return op, nil, nil
	}
	val := p.tok
	var operand any
	switch {
	case val.kind == tokString:
		operand = val.text
	case val.kind == tokNumber:
		operand = val.num
	case p.isKeyword("true"), p.isKeyword("false"):
		operand = strings.EqualFold(val.text, "true")
	default:
		return "", nil, p.errorf("expected a value after %s %s, found %s", subject, op, val.describe())
	}
	if err := checkOperand(subject, op, operand); err != nil {
		return "", nil, &SyntaxError{Line: at.line, Col: at.col, Msg: err.Error()}
	}
	return op, operand, p.advance()
}

// parseEvent parses the method chain after event('name').
func (p *parser) parseEvent(name string) (Condition, error) {
	c := &EventCondition{Name: name, Op: Ge, Count: 1}
	seen := map[string]bool{}
	for p.tok.kind == tokDot {
		if err := p.advance(); err != nil {
			return nil, err
		}
		m := p.tok
		if m.kind != tokIdent {
			return nil, p.errorf("expected where, within, in_between or count after '.', found %s", m.describe())
		}
		method := strings.ToLower(m.text)
		if seen[method] || (method == "within" && seen["in_between"]) || (method == "in_between" && seen["within"]) {
			return nil, p.errorf("%s is given twice", method)
		}
		seen[method] = true
		if err := p.advance(); err != nil {
			return nil, err
		}
		if _, err := p.expect(tokLParen, "'(' after "+method); err != nil {
			return nil, err
		}
		switch method {
		case "where":
			p.inWhere = true
			w, err := p.parseOr()
			p.inWhere = false
			if err != nil {
				return nil, err
			}
			if err := validateWhere(w); err != nil {
				return nil, &SyntaxError{Line: m.line, Col: m.col, Msg: err.Error()}
			}
			c.Filter = w
		case "within":
			d, err := p.parseDuration()
			if err != nil {
				return nil, err
			}
			c.Window = Window{To: d}
		case "in_between":
			from, err := p.parseDuration()
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(tokComma, "','"); err != nil {
				return nil, err
			}
			to, err := p.parseDuration()
			if err != nil {
				return nil, err
			}
			if to <= from {
				return nil, &SyntaxError{Line: m.line, Col: m.col, Msg: "in_between(a, b) needs a shorter than b"}
			}
			c.Window = Window{From: from, To: to, Between: true}
		case "count":
			if _, err := p.expect(tokRParen, "')' after count("); err != nil {
				return nil, err
			}
			op := p.tok
			if op.kind != tokOp {
				return nil, p.errorf("expected a comparison after count(), found %s", op.describe())
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
			n := p.tok
			if n.kind != tokNumber || n.num < 0 || n.num != float64(int(n.num)) {
				return nil, p.errorf("type mismatch: count() compares with a whole number, found %s", n.describe())
			}
			c.Op, c.Count = Op(op.text), int(n.num)
			if err := p.advance(); err != nil {
				return nil, err
			}
			return c, nil // count() ends the chain
		default:
			return nil, &SyntaxError{Line: m.line, Col: m.col, Msg: fmt.Sprintf("unknown method %q: want where, within, in_between or count", m.text)}
		}
		if _, err := p.expect(tokRParen, "')'"); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// parseDuration parses "N days" or "N hours".
func (p *parser) parseDuration() (time.Duration, error) {
	n := p.tok
	if n.kind != tokNumber || n.num <= 0 || n.num != float64(int(n.num)) || n.num > 100*365 {
		return 0, p.errorf("expected a whole number of days or hours (1 to 36500), found %s", n.describe())
	}
	if err := p.advance(); err != nil {
		return 0, err
	}
	unit := strings.ToLower(p.tok.text)
	if p.tok.kind != tokIdent {
		unit = ""
	}
	var d time.Duration
	switch unit {
	case "day", "days":
		d = time.Duration(n.num) * 24 * time.Hour
	case "hour", "hours":
		d = time.Duration(n.num) * time.Hour
	default:
		return 0, p.errorf("expected days or hours after %s, found %s", n.text, p.tok.describe())
	}
	return d, p.advance()
}
