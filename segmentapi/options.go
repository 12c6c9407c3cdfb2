package segmentapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"time"
)

// Option configures a handler. Options are checked when the handler is
// made: a bad one (an empty key, say) panics there, as http.ServeMux.Handle
// does with a bad pattern, because a handler cannot be served half
// configured.
type Option func(*config) error

type config struct {
	// writeKeys maps a write key's SHA-256 to its source id.
	writeKeys    map[[sha256.Size]byte]string
	accessTokens [][sha256.Size]byte
	logger       *slog.Logger
	now          func() time.Time
	space        string
}

// WithWriteKey lets the Tracking API take messages sent with key (Segment's
// write key, the HTTP Basic user name) as messages of the source sourceID:
// it becomes each message's Source. Give it once per source; a key given
// twice is refused.
func WithWriteKey(key, sourceID string) Option {
	return func(c *config) error {
		if key == "" {
			return fmt.Errorf("segmentapi: WithWriteKey: empty write key")
		}
		if sourceID == "" {
			return fmt.Errorf("segmentapi: WithWriteKey: empty source id")
		}
		h := sha256.Sum256([]byte(key))
		if _, ok := c.writeKeys[h]; ok {
			return fmt.Errorf("segmentapi: WithWriteKey: a write key is given twice")
		}
		c.writeKeys[h] = sourceID
		return nil
	}
}

// WithAccessToken lets the Profile API (the token as HTTP Basic user name,
// as Segment's) and the Regulations API (as a Bearer token) be called with
// token. Several tokens may be given, to rotate one.
func WithAccessToken(token string) Option {
	return func(c *config) error {
		if token == "" {
			return fmt.Errorf("segmentapi: WithAccessToken: empty token")
		}
		c.accessTokens = append(c.accessTokens, sha256.Sum256([]byte(token)))
		return nil
	}
}

// WithLogger sets where handlers log the requests they fail with a server
// error (default slog.Default()). A line names the endpoint and the
// error's class only, never an identifier, a value or a backend's error
// text, which may quote one.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("segmentapi: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithClock sets the clock the Tracking API stamps receivedAt with
// (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("segmentapi: WithClock: nil clock")
		}
		c.now = now
		return nil
	}
}

// WithSpace makes the Profile API answer only for the space spaceID (the
// {space_id} of its paths); another space is not found. Without it every
// space id names the Controller's one space.
func WithSpace(spaceID string) Option {
	return func(c *config) error {
		if spaceID == "" {
			return fmt.Errorf("segmentapi: WithSpace: empty space id")
		}
		c.space = spaceID
		return nil
	}
}

func newConfig(opts []Option) *config {
	c := &config{writeKeys: map[[sha256.Size]byte]string{}, logger: slog.Default(), now: time.Now}
	for _, o := range opts {
		if o == nil {
			panic("segmentapi: nil Option")
		}
		if err := o(c); err != nil {
			panic(err.Error())
		}
	}
	return c
}

// source returns the source id of the write key, and whether it is one.
// The key is compared by its hash, so the lookup's time says nothing
// about the keys held.
func (c *config) source(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	src, ok := c.writeKeys[sha256.Sum256([]byte(key))]
	return src, ok
}

// tokenOK reports whether token is one of the access tokens, comparing
// each in constant time.
func (c *config) tokenOK(token string) bool {
	if token == "" {
		return false
	}
	h := sha256.Sum256([]byte(token))
	ok := 0
	for i := range c.accessTokens {
		ok |= subtle.ConstantTimeCompare(h[:], c.accessTokens[i][:])
	}
	return ok == 1
}
