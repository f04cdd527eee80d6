package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/chainraft/chainraft/harness/report"
)

func init() {
	subcommands = append(subcommands, newServeCmd)
}

// serveShutdownTimeout bounds how long in-flight requests may finish after
// SIGINT before the server closes them.
const serveShutdownTimeout = 5 * time.Second

// newServeCmd serves the runs directory over HTTP: the index, each run's
// report, Porcupine visualizations and logs, as static files. It binds to
// loopback by default: run directories hold node logs, not for the world.
func newServeCmd() *cobra.Command {
	var dir, addr string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the runs directory (index, reports, visualizations, logs) over HTTP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return usageErrorf("serve: --dir %s is not a directory", dir)
			}
			if n, err := writeMissingReports(dir); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "chainraft: serve: %v\n", err)
			} else if n > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote report.html for %d run(s) that had none\n", n)
			}
			if err := report.WriteIndex(dir); err != nil {
				if errors.Is(err, report.ErrForeignIndex) {
					return usageErrorf("serve: --dir %s: %v", dir, err)
				}
				return withCode(exitRunFailed, fmt.Errorf("serve: index: %w", err))
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return usageErrorf("serve: %v", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fmt.Fprintf(cmd.OutOrStdout(), "serving %s at http://%s/ (Ctrl-C to stop)\n", dir, ln.Addr())
			return serveRuns(ctx, ln, dir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "runs", "the runs directory to serve")
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen address")
	return cmd
}

// serveRuns serves dir on ln until ctx ends, then shuts down gracefully:
// no new connections, in-flight requests get serveShutdownTimeout.
func serveRuns(ctx context.Context, ln net.Listener, dir string) error {
	srv := &http.Server{
		Handler:           runsHandler(dir),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }() // owned here: ends when Shutdown returns
	select {
	case err := <-errc:
		return withCode(exitRunFailed, fmt.Errorf("serve: %w", err))
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), serveShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// insideRoot reports whether the URL path, resolved on disk under dir with
// every symbolic link followed, lies inside root (dir resolved). A path
// that does not exist is inside (the file server answers 404).
func insideRoot(root, dir, urlPath string) bool {
	p := filepath.Join(dir, filepath.FromSlash(path.Clean("/"+urlPath)))
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(root, real)
	return err == nil && filepath.IsLocal(rel) || rel == "."
}

// writeMissingReports writes report.html for each run under dir that has a
// summary.json but no report (runs made before reports existed, or cut
// short); it returns how many it wrote and the last error.
func writeMissingReports(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	var last error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		run := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(run, "report.html")); err == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(run, "summary.json")); err != nil {
			continue
		}
		if err := report.WriteRun(run); err != nil {
			last = err
			continue
		}
		n++
	}
	return n, last
}

// runsHandler serves the directory's files. Reports are files, so the
// browser sees exactly what opening them from disk shows; run directories
// without a report.html get the file listing. The index is rewritten on
// each request for it, so runs finished while serving appear on reload.
//
// Everything served stays inside dir: symbolic links are followed (a
// comparison links its runs, runs/latest the newest) only when what they
// name lies inside dir too; a link out of it (to /etc, to a home
// directory) is 403, whoever made it.
func runsHandler(dir string) http.Handler {
	files := http.FileServer(http.Dir(dir))
	root, rootErr := filepath.EvalSymlinks(dir)
	if rootErr == nil {
		root, rootErr = filepath.Abs(root)
	}
	var indexMu sync.Mutex // one index write at a time
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" || r.URL.Path == "/index.html" {
			indexMu.Lock()
			err := report.WriteIndex(dir)
			indexMu.Unlock()
			if err != nil {
				http.Error(w, "index: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		if rootErr != nil || !insideRoot(root, dir, r.URL.Path) {
			http.Error(w, "forbidden: outside the served directory", http.StatusForbidden)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		// The pages are self-contained: forbid any fetch from elsewhere.
		w.Header().Set("Content-Security-Policy", "default-src 'self' 'unsafe-inline'; img-src 'self' data:")
		files.ServeHTTP(w, r)
	})
}
