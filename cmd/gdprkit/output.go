package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/export"
)

// print writes v as a JSON line with -json, else text.
func (cl *cli) print(v any, text string) error {
	if cl.json {
		return json.NewEncoder(cl.out).Encode(v)
	}
	_, err := fmt.Fprintln(cl.out, text)
	return err
}

// wireReceipt is a receipt as -json prints it.
type wireReceipt struct {
	ID              string    `json:"id"`
	Type            string    `json:"type"`
	Status          string    `json:"status"`
	Reason          string    `json:"reason,omitempty"`
	Received        time.Time `json:"received"`
	Due             time.Time `json:"due"`
	Finished        time.Time `json:"finished,omitzero"`
	ExtensionReason string    `json:"extension_reason,omitempty"`
	ProfileVersion  uint64    `json:"profile_version,omitempty"`
	Subjects        []string  `json:"subjects"`
	Backends        []outcome `json:"backends"`
	Destinations    []outcome `json:"destinations"`
}

type outcome struct {
	Name     string    `json:"name"`
	Status   string    `json:"status"`
	Error    string    `json:"error,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
}

func wire(r *privacy.Receipt) wireReceipt {
	w := wireReceipt{ID: r.ID, Type: string(r.Type), Status: string(r.Status), Reason: r.Reason, Received: r.Received,
		Due: r.Due, Finished: r.Finished, ExtensionReason: r.ExtensionReason, ProfileVersion: r.ProfileVersion,
		Subjects: []string{}, Backends: []outcome{}, Destinations: []outcome{}}
	for _, h := range r.Subjects {
		w.Subjects = append(w.Subjects, h.String())
	}
	for _, o := range r.Backends {
		w.Backends = append(w.Backends, outcome{o.Name, string(o.Status), o.Err, o.Finished})
	}
	for _, o := range r.Destinations {
		w.Destinations = append(w.Destinations, outcome{o.Name, string(o.Status), o.Err, o.Finished})
	}
	return w
}

// receipt prints r.
func (cl *cli) receipt(r *privacy.Receipt) error {
	if cl.json {
		return json.NewEncoder(cl.out).Encode(wire(r))
	}
	tw := tabwriter.NewWriter(cl.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "request\t%s\n", r.ID)
	fmt.Fprintf(tw, "type\t%s\n", r.Type)
	fmt.Fprintf(tw, "status\t%s\n", r.Status)
	if r.Reason != "" {
		fmt.Fprintf(tw, "reason\t%s\n", r.Reason)
	}
	fmt.Fprintf(tw, "received\t%s\n", r.Received.Format(time.RFC3339))
	fmt.Fprintf(tw, "due\t%s\n", r.Due.Format(time.RFC3339))
	if !r.Finished.IsZero() {
		fmt.Fprintf(tw, "finished\t%s\n", r.Finished.Format(time.RFC3339))
	}
	for _, o := range r.Backends {
		fmt.Fprintf(tw, "backend %s\t%s\t%s\n", o.Name, o.Status, o.Err)
	}
	for _, o := range r.Destinations {
		fmt.Fprintf(tw, "destination %s\t%s\t%s\n", o.Name, o.Status, o.Err)
	}
	return tw.Flush()
}

func (cl *cli) list(ctx context.Context, args []string) error {
	fs := cl.flags("list")
	status := fs.String("status", "", "only requests with this status (INITIALIZED, RUNNING, FINISHED, ...)")
	typ := fs.String("type", "", "only requests of this type")
	overdue := fs.Bool("overdue", false, "only unfinished requests past their due date")
	limit := fs.Int("limit", 50, "how many, at most 1000")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return usagef("list takes -status, -type, -overdue and -limit")
	}
	if *limit < 1 || *limit > 1000 {
		return usagef("list: -limit must be from 1 to 1000")
	}
	return cl.withController(ctx, func(c *privacy.Controller) error {
		var rs []*privacy.Receipt
		if *overdue {
			late, err := c.Overdue(ctx)
			if err != nil {
				return err
			}
			for _, r := range late {
				if (*status == "" || string(r.Status) == strings.ToUpper(*status)) && (*typ == "" || string(r.Type) == strings.ToUpper(*typ)) && len(rs) < *limit {
					rs = append(rs, r)
				}
			}
		} else {
			f := privacy.RequestFilter{Limit: *limit}
			if *status != "" {
				f.Statuses = []privacy.Status{privacy.Status(strings.ToUpper(*status))}
			}
			if *typ != "" {
				f.Types = []privacy.RequestType{privacy.RequestType(strings.ToUpper(*typ))}
			}
			page, err := c.Requests(ctx, f)
			if err != nil {
				return err
			}
			rs = page.Receipts
		}
		if cl.json {
			enc := json.NewEncoder(cl.out)
			for _, r := range rs {
				if err := enc.Encode(wire(r)); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(cl.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REQUEST\tTYPE\tSTATUS\tRECEIVED\tDUE")
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Type, r.Status, r.Received.Format(time.RFC3339), r.Due.Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

func (cl *cli) export(ctx context.Context, args []string) error {
	fs := cl.flags("export")
	format := fs.String("format", "json", "json, ndjson or csv (a zip archive)")
	output := fs.String("o", "", "file to write (made; an existing one is refused)")
	if err := fs.Parse(args); err != nil {
		return usagef("export takes -format and -o")
	}
	if *output == "" {
		return usagef("export needs -o FILE")
	}
	f, err := export.ParseFormat(*format)
	if err != nil {
		return usagef("export: -format must be json, ndjson or csv")
	}
	subjects, err := parseSubjects(fs.Args())
	if err != nil {
		return err
	}
	if len(subjects) != 1 {
		return usagef("export names one SUBJECT")
	}
	return cl.withController(ctx, func(c *privacy.Controller) error {
		// The target is taken first (an existing file is refused before
		// anything is journaled), written beside it and renamed over it once
		// complete: a failed export leaves no partial file that looks whole.
		reserved, err := os.OpenFile(*output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		reserved.Close()
		done := false
		defer func() {
			if !done {
				os.Remove(*output)
			}
		}()
		tmp, err := os.CreateTemp(filepath.Dir(*output), ".gdprkit-export-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		if err := tmp.Chmod(0o600); err != nil { // it holds personal data
			tmp.Close()
			return err
		}
		p := &progress{w: tmp}
		stop := cl.showProgress(p)
		r, err := c.Export(ctx, subjects[0], p, f)
		stop()
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), *output); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		done = true
		return cl.print(map[string]any{"request_id": r.ID, "status": r.Status, "file": *output, "bytes": p.n.Load()},
			fmt.Sprintf("exported %d bytes to %s (request %s, %s)", p.n.Load(), *output, r.ID, r.Status))
	})
}

// progress counts the bytes written through it.
type progress struct {
	w io.Writer
	n atomic.Int64
}

func (p *progress) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n.Add(int64(n))
	return n, err
}

// showProgress prints the bytes written every second on the error output
// (never with -json), until the returned func is called.
func (cl *cli) showProgress(p *progress) func() {
	if cl.json {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				fmt.Fprintf(cl.errOut, "exporting: %d bytes\n", p.n.Load())
			}
		}
	}()
	return func() { close(done); <-finished }
}
