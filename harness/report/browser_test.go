package report

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// chromium finds a headless browser, or skips: the HTML checks above run
// everywhere, this one where a browser is installed.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH (apt-get install -y chromium)")
	return ""
}

// browse opens url in headless Chromium with background networking off and
// a net log on, and returns what the mode flag produces (a screenshot file
// is written by --screenshot; --dump-dom prints the DOM after scripts ran).
func browse(t *testing.T, bin, url string, mode ...string) (stdout string, netLog string) {
	t.Helper()
	tmp := t.TempDir()
	netLog = filepath.Join(tmp, "netlog.json")
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir=" + filepath.Join(tmp, "profile"), "--log-net-log=" + netLog,
		"--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars",
	}, mode...)
	args = append(args, url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "chromium: %s", errb.String())
	return out.String(), netLog
}

// requestedURLs lists the URLs of the requests the page made, from a
// Chromium net log. The browser's own background requests (network time,
// accounts, component updates: initiator "not an origin") are left out:
// they are not the page's, and the host resolver rules keep them from
// leaving the machine.
func requestedURLs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var log struct {
		Events []struct {
			Params map[string]any `json:"params"`
		} `json:"events"`
	}
	if json.Unmarshal(b, &log) != nil {
		// A net log cut short by the browser's exit lacks its closing brackets.
		s := strings.TrimRight(strings.TrimSpace(string(b)), ",") + "]}"
		require.NoError(t, json.Unmarshal([]byte(s), &log))
	}
	var urls []string
	for _, e := range log.Events {
		u, ok := e.Params["url"].(string)
		initiator, hasInitiator := e.Params["initiator"].(string)
		if ok && hasInitiator && initiator != "not an origin" {
			urls = append(urls, u)
		}
	}
	return urls
}

// TestPagesRenderOffline opens report.html and index.html from disk in
// headless Chromium, checks that scripts ran and charts rendered, that no
// request other than file:// was made, and leaves screenshots in
// $CHAINRAFT_SCREENSHOTS (or a temporary directory) to look at.
func TestPagesRenderOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := chromium(t)
	runs := t.TempDir()
	dirs := []string{defaultSynth().write(t, runs)}
	b := defaultSynth()
	b.store, b.name, b.verdict, b.start, b.throughput = "chain", "pause-tail", "ok", b.start.Add(time.Hour), 900
	dirs = append(dirs, b.write(t, runs))
	for _, d := range dirs {
		require.NoError(t, WriteRun(d))
	}
	require.NoError(t, os.Symlink(filepath.Base(dirs[1]), filepath.Join(runs, "latest")))
	require.NoError(t, WriteIndex(runs))

	shots := os.Getenv("CHAINRAFT_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))
	pages := map[string]string{
		"report": filepath.Join(dirs[0], "report.html"),
		"index":  filepath.Join(runs, "index.html"),
	}
	// Sorting and filtering, driven through the fragment the page keeps
	// its state in: by throughput ascending, then only the raft runs.
	dom, _ := browse(t, bin, "file://"+pages["index"]+"#sort=7&dir=asc", "--dump-dom")
	require.Less(t, strings.Index(dom, "raft-kill-leader"), strings.Index(dom, "chain-pause-tail"))
	require.Contains(t, dom, `<th data-col="7" data-num="" class="n asc" title="ok operations per second over the whole run, outages included">`)
	dom, _ = browse(t, bin, "file://"+pages["index"]+"#sort=7&dir=desc&store=raft", "--dump-dom")
	require.Less(t, strings.Index(dom, "chain-pause-tail"), strings.Index(dom, "raft-kill-leader"))
	require.Contains(t, dom, `<span class="mut" id="shown">1 of 2 shown</span>`)
	dom, _ = browse(t, bin, "file://"+pages["index"]+"#q=PAUSE-tail", "--dump-dom")
	require.Contains(t, dom, `<span class="mut" id="shown">1 of 2 shown</span>`)
	require.Regexp(t, `<tr data-verdict="illegal"[^>]*style="display: none;"`, dom)

	for name, page := range pages {
		url := "file://" + page
		dom, netLog := browse(t, bin, url, "--dump-dom")
		for _, u := range requestedURLs(t, netLog) {
			require.True(t, strings.HasPrefix(u, "file://"), "%s requested %s", name, u)
		}
		switch name {
		case "index":
			// The filter script ran: it fills the count of shown rows.
			require.Contains(t, dom, `<span class="mut" id="shown">2 of 2 shown</span>`)
		case "report":
			require.Equal(t, 1, strings.Count(dom, `<svg class="chart"`))
		}
		png := filepath.Join(shots, name+".png")
		size := "--window-size=1280,2600"
		if name == "index" {
			size = "--window-size=1280,600"
		}
		browse(t, bin, url, "--screenshot="+png, size)
		fi, err := os.Stat(png)
		require.NoError(t, err)
		require.Greater(t, fi.Size(), int64(20_000), "%s screenshot looks empty", name)
		t.Logf("screenshot %s", png)
	}
}

// TestNetLogSeesRequests shows the offline check can fail: a page that
// fetches from a (local, closed) http address shows up in the net log.
func TestNetLogSeesRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := chromium(t)
	page := filepath.Join(t.TempDir(), "leak.html")
	require.NoError(t, os.WriteFile(page, []byte(`<html><body><img src="http://127.0.0.1:9/x.png"></body></html>`), 0o644))
	_, netLog := browse(t, bin, "file://"+page, "--dump-dom")
	require.Contains(t, requestedURLs(t, netLog), "http://127.0.0.1:9/x.png")
}
