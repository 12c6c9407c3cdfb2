package segmentapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
)

const (
	// ingestConns is how many connections http-8conns posts batches on at once,
	// and ingestConnPeople how many known people its batches are about:
	// the load issue 19 ran a peer's gateway under.
	ingestConns      = 8
	ingestConnPeople = 1000
)

// benchIngestConcurrent is BenchmarkIngest's http-8conns: b.N batches of 100
// track messages about ingestConnPeople known people, POSTed to /v1/batch
// on ingestConns connections at once, each kept alive by a client of its
// own, as issue 19's peer was loaded. Each client encodes its batch before
// it sends it, on the same two cores as the server: a real client does
// that on its own machine. It reports msgs/s, and the CPU time per message
// of this process (server and clients: proc-us/msg) and, on postgres, of
// the PostgreSQL server's processes (pg-us/msg, when they can be read in
// /proc).
func benchIngestConcurrent(b *testing.B, open func(*testing.B) *privacy.Controller, postgres bool) {
	c := open(b)
	seedIngestPeopleN(b, c, ingestConnPeople)
	srv, conns := serveIngest(c)
	b.Cleanup(srv.Close)
	sentAt := time.Now().UTC().Truncate(time.Millisecond)
	clients := make([]*http.Client, ingestConns)
	for i := range clients {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
		b.Cleanup(tr.CloseIdleConnections)
		clients[i] = &http.Client{Transport: tr, Timeout: time.Minute}
		if err := postBatch(clients[i], srv.URL, ingestBodyAmong(b, -1-i, sentAt, ingestConnPeople)); err != nil {
			b.Fatal(err)
		}
	}
	before := c.Stats()
	proc0, pg0 := processCPU(), postgresCPU()
	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, ingestConns)
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := int(next.Add(1)) - 1; n < b.N; n = int(next.Add(1)) - 1 {
				if err := postBatch(cl, srv.URL, ingestBodyAmong(b, n, sentAt, ingestConnPeople)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if n := conns.Load(); n != ingestConns {
		b.Fatalf("the clients opened %d connections, want %d kept alive", n, ingestConns)
	}
	checkIngested(b, c, before, b.N)
	msgs := float64(b.N * ingestBatchSize)
	b.ReportMetric(msgs/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric((processCPU()-proc0).Seconds()*1e6/msgs, "proc-us/msg")
	if postgres && pg0 >= 0 {
		b.ReportMetric((postgresCPU()-pg0).Seconds()*1e6/msgs, "pg-us/msg")
	}
}

// postBatch sends body to the server at url as a client does, and fails
// unless every message was taken.
func postBatch(cl *http.Client, url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(testWriteKey, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(answer) != "{\"success\":true}\n" {
		return fmt.Errorf("POST /v1/batch: %s: %s", resp.Status, answer)
	}
	return nil
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postgresCPU is the CPU time the processes named postgres on this machine
// have used, read in /proc (a server's backends come and go: one that
// ended in between is not counted); -1 where /proc cannot be read.
func postgresCPU() time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	var ticks float64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime stime: the 14th and 15th fields,
		// counted after the command name, which may hold spaces.
		open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || end < open || string(stat[open+1:end]) != "postgres" {
			continue
		}
		f := strings.Fields(string(stat[end+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		ticks += u + s
	}
	return time.Duration(ticks * float64(time.Second) / 100) // USER_HZ is 100 on Linux
}
