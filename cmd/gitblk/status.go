package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gitblk/gitblk/metrics"
)

const statusExamples = `  gitblk status 127.0.0.1:9410          # serve --metrics-listen 127.0.0.1:9410
  gitblk status unix:/run/gitblk/site/metrics.sock
  gitblk status --json :9410 | jq '.exports[].commit'
`

// statusTimeout bounds the whole request to a server.
const statusTimeout = 10 * time.Second

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", "status [flags] ADDR", statusExamples, stderr)
	asJSON := fs.Bool("json", false, "print the server's JSON as it is")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	base, client, err := statusClient(pos[0])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/status", nil)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("status: %w (is serve running with --metrics-listen %s?)", err, pos[0])
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("status: read %s/status: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status: %s/status: %s", base, resp.Status)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var st metrics.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("status: %s/status is not gitblk's status: %w", base, err)
	}
	printStatus(stdout, pos[0], st, time.Now())
	return nil
}

// statusClient turns ADDR (HOST:PORT, :PORT, PORT, unix:PATH or an
// http:// URL) into a base URL and the client that reaches it.
func statusClient(addr string) (string, *http.Client, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return "", nil, usagef("status: want unix:PATH, got %q", addr)
		}
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}
		return "http://gitblk", &http.Client{Transport: tr}, nil
	}
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return strings.TrimSuffix(addr, "/"), &http.Client{}, nil
	}
	hostport := addr
	if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
		hostport = ":" + addr
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", nil, usagef("status: want HOST:PORT, :PORT, unix:PATH or a URL, got %q", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), &http.Client{}, nil
}

// printStatus writes st for a person: one line for the server, a table of
// exports, and one of the remotes followed.
func printStatus(w io.Writer, addr string, st metrics.Status, now time.Time) {
	fmt.Fprintf(w, "gitblk at %s: up %s (since %s), %d connections open\n", addr,
		ago(now, st.Started), st.Started.UTC().Format(time.RFC3339), st.ConnectionsOpen)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "EXPORT\tREF\tFORMAT\tCOMMIT\tOPEN\tTOTAL\tREAD")
	if len(st.Exports) == 0 {
		fmt.Fprintln(tw, "(none yet)\t\t\t\t\t\t")
	}
	for _, e := range st.Exports {
		name := e.Name
		if name == "" {
			name = `"" (default)`
		}
		commit := e.Commit
		if commit == "" {
			commit = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", name, dash(e.Ref), dash(e.Format), commit, e.Open, e.Total, humanBytes(e.ReadBytes))
	}
	tw.Flush()
	if len(st.Follow) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "FOLLOWING\tLAST FETCH\tRESULT\tLAST GOOD\tOK\tFAILED\tUPDATES")
	for _, f := range st.Follow {
		result := "ok"
		if f.LastError != "" {
			result = "failed"
		}
		last := "never"
		if !f.LastFetch.IsZero() {
			last = fmt.Sprintf("%s ago, took %.1fs", ago(now, f.LastFetch), f.LastDuration)
		}
		good := "never"
		if !f.LastSuccess.IsZero() {
			good = ago(now, f.LastSuccess) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", f.Remote, last, result, good, f.OK, f.Failed, f.Updates)
	}
	tw.Flush()
	for _, f := range st.Follow {
		if f.LastError != "" {
			fmt.Fprintf(w, "last fetch from %s failed: %s\n", f.Remote, f.LastError)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago is the time from t to now, rounded for reading.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// humanBytes writes n with a binary unit.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
