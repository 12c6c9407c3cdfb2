package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is the server's output, written by its goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the server on a free port; the returned func shuts it down
// and returns serve's error.
func start(t *testing.T, cfg config) (string, *syncBuffer, func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, cfg, out) }()
	base := "http://" + ln.Addr().String()
	for i := 0; !strings.Contains(out.String(), "serving"); i++ {
		select {
		case err := <-done:
			t.Fatalf("the server stopped: %v\n%s", err, out)
		case <-time.After(10 * time.Millisecond):
		}
		if i > 1000 {
			t.Fatalf("the server did not start:\n%s", out)
		}
	}
	return base, out, func() error { cancel(); return <-done }
}

func call(t *testing.T, method, url, body string, auth func(*http.Request)) (int, []byte) {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	auth(r)
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

// TestServeCollectsReadsErasesAcrossRestarts runs the example: a track in,
// read back, erased and suppressed; then a restart on the same database and
// key file, where the suppression still holds.
func TestServeCollectsReadsErasesAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg := config{db: filepath.Join(dir, "segment.db"), keyFile: filepath.Join(dir, "segment.db.key"),
		writeKey: "wk_test", source: "src_test", token: "tok_test", shutdown: 5 * time.Second}
	basic := func(user string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(user, "") } }
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok_test") }
	profile := "/v1/spaces/local/collections/users/profiles/user_id:ada/events"

	base, _, stop := start(t, cfg)
	if code, b := call(t, "POST", base+"/v1/track", `{"userId":"ada","event":"Signed Up","messageId":"m1"}`, basic("wk_test")); code != 200 {
		t.Fatalf("track: %d %s", code, b)
	}
	code, b := call(t, "GET", base+profile, "", basic("tok_test"))
	if code != 200 || !strings.Contains(string(b), `"message_id":"m1"`) || !strings.Contains(string(b), `"source_id":"src_test"`) {
		t.Fatalf("events: %d %s", code, b)
	}
	if code, _ := call(t, "GET", base+profile, "", basic("wk_test")); code != 401 {
		t.Errorf("the Profile API took the write key: %d", code)
	}
	code, b = call(t, "POST", base+"/regulations", `{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}`, bearer)
	var created struct {
		Data struct{ RegulateID string } `json:"data"`
	}
	if code != 200 || json.Unmarshal(b, &created) != nil || created.Data.RegulateID == "" {
		t.Fatalf("regulation: %d %s", code, b)
	}
	if code, _ := call(t, "GET", base+profile, "", basic("tok_test")); code != 404 {
		t.Fatalf("ada's events after erasure: %d, want 404", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("shutting down: %v", err)
	}
	key1, err := os.ReadFile(cfg.keyFile)
	if err != nil {
		t.Fatal(err)
	}

	// Restarted: the key file is read, not made again, and ada stays out.
	base, out, stop := start(t, cfg)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("shutting down: %v", err)
		}
	}()
	if key2, _ := os.ReadFile(cfg.keyFile); !bytes.Equal(key1, key2) {
		t.Fatal("the key file changed across a restart")
	}
	if code, b := call(t, "POST", base+"/v1/track", `{"userId":"ada","event":"Came Back","messageId":"m2"}`, basic("wk_test")); code != 200 {
		t.Fatalf("track after restart: %d %s", code, b)
	}
	if code, b := call(t, "GET", base+profile, "", basic("tok_test")); code != 404 {
		t.Fatalf("a suppressed person was stored after a restart: %d %s", code, b)
	}
	code, b = call(t, "GET", base+"/regulations/"+created.Data.RegulateID, "", bearer)
	if code != 200 || !strings.Contains(string(b), `"overallStatus":"FINISHED"`) {
		t.Fatalf("the regulation after a restart: %d %s", code, b)
	}
	if strings.Contains(out.String(), "made for this start") {
		t.Errorf("given keys, the server made its own:\n%s", out)
	}
}

func TestLoadKeyRefusesABadKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(path, []byte("not hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKey(path); err == nil || !strings.Contains(err.Error(), "32 or more hex-encoded bytes") {
		t.Fatalf("loadKey of a bad file: %v", err)
	}
	if err := os.WriteFile(path, []byte("abcd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKey(path); err == nil {
		t.Fatal("loadKey took a 2-byte key")
	}
}

func TestLoadKeyMakesAPrivateKeyFileOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "segment.db.key")
	k1, err := loadKey(path)
	if err != nil || len(k1) != 32 {
		t.Fatalf("first start: %x, %v", k1, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", st, err)
	}
	k2, err := loadKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second start read another key: %x, %v", k2, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("the directory holds %v, %v: want the key file alone", entries, err)
	}
}
