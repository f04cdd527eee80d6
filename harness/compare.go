package harness

// Compare: the same workload (and, once the nemesis is wired in, the same
// fault schedule) against several stores one after the other, so that the
// only thing that differs between the runs is the store. The runs are
// ordinary runs in Out (listed by the index, each with its report); the
// compare directory Out/<timestamp>-compare/ links them and holds
// compare.json and compare.html.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chainraft/chainraft/harness/report"
	"github.com/chainraft/chainraft/histories"
)

// How faults are aimed in the runs after the first.
const (
	// TargetsRole maps roles between the stores by the job each driver
	// declares for its roles (MapRoleByJob), so each fault hits the node
	// doing the same job.
	TargetsRole = "role"
	// TargetsSameNode aims each fault at the node ids the first run's fault
	// hit, whatever role they hold now.
	TargetsSameNode = "same-node"
)

// CompareConfig is a comparison: Run is the template of every run (its
// Store is replaced by each of Stores in turn, with the same seed and
// workload).
//
// Faults: with Run.Nemesis enabled, the first store's run makes the
// schedule (generated from the seed, or replayed); every later store
// replays that run's nemesis.jsonl with each fault's role translated by
// Targets, from a copy written to the compare directory
// (schedule-<store>.jsonl). So every store gets the same faults at the same
// offsets, aimed at the node doing the same job.
type CompareConfig struct {
	// Stores are registered store names, run in this order; Drivers, when
	// set, are run instead (Stores is then ignored).
	Stores  []string
	Drivers []Driver
	Run     RunConfig
	Targets string
}

// FaultMapper translates the target of schedule step `step`, written as
// role for the first store, into a role spec of the store being run.
type FaultMapper interface {
	Role(step int, role string) string
}

// CompareRun is one store's run in a comparison.
type CompareRun struct {
	Store string `json:"store"`
	// Dir is the link to the run inside the compare directory; RunDir is
	// the run directory itself, relative to the compare directory.
	Dir     string   `json:"dir"`
	RunDir  string   `json:"run_dir"`
	Verdict string   `json:"verdict"`
	Error   string   `json:"error,omitempty"`
	Summary *Summary `json:"summary,omitempty"`

	// Err is Run's error; the exit code is derived from it.
	Err error `json:"-"`
}

// CompareResult is what Compare produced.
type CompareResult struct {
	Dir  string
	Runs []CompareRun
	// Rows is the side-by-side table, one value per run.
	Rows []report.CompareRow
	// Roles maps each store's roles onto the others' (RoleTable).
	Roles []RoleRow
}

// compareFile is compare.json.
type compareFile struct {
	Start        time.Time `json:"start"`
	Command      []string  `json:"command,omitempty"`
	Seed         int64     `json:"seed"`
	TimeLimitS   float64   `json:"time_limit_s"`
	Clients      int       `json:"clients"`
	Keys         int       `json:"keys"`
	ReadFraction float64   `json:"read_fraction"`
	ValueSize    int       `json:"value_size,omitempty"`
	Targets      string    `json:"targets"`
	Faults       bool      `json:"faults"`
	Verdict      string    `json:"verdict"`
	// Roles maps each store's roles onto the others' (RoleTable).
	Roles []RoleRow           `json:"roles,omitempty"`
	Runs  []CompareRun        `json:"runs"`
	Table []report.CompareRow `json:"table"`
}

// Validate reports a comparison Compare would refuse, naming the field.
func (c CompareConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	ds, err := c.drivers()
	if err != nil {
		return bad("%v", err)
	}
	if len(ds) == 0 {
		return bad("no stores to compare")
	}
	switch c.Targets {
	case "", TargetsRole, TargetsSameNode:
	default:
		return bad("targets must be %s or %s, got %q", TargetsRole, TargetsSameNode, c.Targets)
	}
	for i, d := range ds {
		rc := c.Run
		rc.Store, rc.Driver = d.Name(), d
		rc.Cluster.ReadMode = readModeFor(d, rc.Cluster.ReadMode)
		if i > 0 && rc.Nemesis.Enabled() {
			// The later stores replay the first's schedule with its roles
			// mapped by job: a role with no counterpart is refused now,
			// not skipped in the middle of the comparison.
			if err := checkMappable(ds[0], d, c.Run, c.Targets); err != nil {
				return err
			}
			rc.Nemesis = NemesisConfig{}
		}
		if err := rc.Validate(); err != nil {
			return fmt.Errorf("%s: %w", d.Name(), err)
		}
	}
	return nil
}

// readModeFor is the read mode a compared store runs: the one asked for if
// the store offers it, else the store's default (compare --read-mode
// serializable means etcd's, not raft's).
func readModeFor(d Driver, mode string) string {
	if checkReadMode(d, mode) == nil {
		return mode
	}
	return ""
}

// drivers are the drivers compared, in order.
func (c CompareConfig) drivers() ([]Driver, error) {
	if len(c.Drivers) > 0 {
		return c.Drivers, nil
	}
	var out []Driver
	for _, name := range c.Stores {
		d, err := LookupDriver(name)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// checkMappable refuses a comparison whose first store's schedule has a
// fault that store to cannot take: a role no role of to does the job of,
// or a kind to does not support.
func checkMappable(from, to Driver, run RunConfig, targets string) error {
	first := run
	first.Store, first.Driver = from.Name(), from
	first = first.WithDefaults()
	steps, err := first.Nemesis.steps(first, first.Workload.WithDefaults().Seed)
	if err != nil {
		return fmt.Errorf("%s: %w", from.Name(), err)
	}
	fd, ok := to.(FaultDriver)
	if !ok {
		return fmt.Errorf("%w: the %s store has nothing for a nemesis to fault", ErrInvalidConfig, to.Name())
	}
	for _, st := range steps {
		if !slices.Contains(fd.FaultKinds(), st.Fault.Kind) {
			return fmt.Errorf("%w: fault %d (%s) of the %s schedule: the %s store cannot take %s faults",
				ErrInvalidConfig, st.ID, st.Fault.Describe(), from.Name(), to.Name(), st.Fault.Kind)
		}
		if targets == TargetsSameNode {
			continue
		}
		if _, ok := MapRoleByJob(st.Fault.Role, RolesOf(from), fd.Roles()); !ok {
			return fmt.Errorf("%w: fault %d (%s) of the %s schedule: no role of the %s store does the job of %q",
				ErrInvalidConfig, st.ID, st.Fault.Describe(), from.Name(), to.Name(), st.Fault.Role)
		}
	}
	return nil
}

// Compare runs each store in turn with the same configuration and writes
// the compare directory. A run that fails does not stop the others (its
// summary says why); an interrupt does. The returned error is non-nil only
// for an invalid configuration, an interrupt, or a compare directory that
// could not be written; each run's own error is in its CompareRun.
func Compare(ctx context.Context, cfg CompareConfig) (*CompareResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Run.Name == "" {
		cfg.Run.Name = "compared"
	}
	if cfg.Targets == "" {
		cfg.Targets = TargetsRole
	}
	base := cfg.Run.WithDefaults()
	progress := base.Progress
	start := time.Now()
	dir, err := MakeRunDir(base.Out, start.UTC().Format("20060102T150405Z")+"-compare")
	if err != nil {
		return nil, err
	}
	ds, _ := cfg.drivers() // Validate checked them
	res := &CompareResult{Dir: dir, Roles: RoleTable(ds)}
	var runErr error
	for i, d := range ds {
		st := d.Name()
		if ctx.Err() != nil {
			runErr = ErrInterrupted
			break
		}
		fmt.Fprintf(progress, "== %s (%d of %d) ==\n", st, i+1, len(ds))
		rc := cfg.Run
		rc.Store, rc.Driver = st, d
		rc.Cluster.ReadMode = readModeFor(d, rc.Cluster.ReadMode)
		rc.Sidecars = slices.Clone(cfg.Run.Sidecars)
		rc.Compare = dir
		if i > 0 && cfg.Run.Nemesis.Enabled() {
			first := filepath.Join(dir, res.Runs[0].Dir)
			sched := filepath.Join(dir, "schedule-"+linkName(st, res.Runs)+".jsonl")
			err := writeMappedSchedule(filepath.Join(first, "nemesis.jsonl"), sched, cfg.Targets, ds[0], d)
			if err != nil {
				// The first run left no schedule (it failed to start):
				// this store makes its own from the same seed.
				fmt.Fprintf(progress, "warning: %v; %s gets its own schedule from the seed\n", err, st)
			} else {
				rc.Nemesis.Replay = sched
			}
		}
		r, err := Run(ctx, rc)
		if r == nil && errors.Is(err, ErrInvalidConfig) {
			// Refused before anything ran (a bad schedule): bad usage, for
			// every store alike, so nothing to compare.
			if i == 0 {
				_ = os.RemoveAll(dir)
			}
			return nil, err
		}
		cr := CompareRun{Store: st, Err: err, Verdict: string(histories.VerdictUnknown)}
		if err != nil {
			cr.Error = err.Error()
		}
		if r != nil {
			cr.Summary = r.Summary
			cr.Verdict = r.Summary.Verdict
			cr.Dir = linkName(st, res.Runs)
			rel, relErr := filepath.Rel(dir, r.Dir)
			if relErr != nil {
				rel, _ = filepath.Abs(r.Dir)
			}
			cr.RunDir = rel
			if err := os.Symlink(rel, filepath.Join(dir, cr.Dir)); err != nil {
				return res, fmt.Errorf("linking %s run: %w", st, err)
			}
		}
		res.Runs = append(res.Runs, cr)
		if errors.Is(err, ErrInterrupted) || ctx.Err() != nil {
			runErr = ErrInterrupted
			break
		}
	}

	runDirs := make([]string, len(res.Runs))
	for i, cr := range res.Runs {
		if cr.Dir != "" {
			runDirs[i] = filepath.Join(dir, cr.Dir)
		}
	}
	res.Rows = report.CompareRows(runDirs)
	f := compareFile{
		Start: start.UTC(), Command: cfg.Run.Command, Seed: cfg.Run.Workload.Seed,
		TimeLimitS: cfg.Run.TimeLimit.Seconds(), Clients: cfg.Run.Clients, Keys: cfg.Run.Workload.Keys,
		ReadFraction: cfg.Run.Workload.ReadFraction, ValueSize: cfg.Run.Workload.ValueSize,
		Targets: cfg.Targets, Faults: cfg.Run.Nemesis.Enabled(), Verdict: res.Verdict(),
		Roles: res.Roles, Runs: res.Runs, Table: res.Rows,
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return res, errors.Join(runErr, fmt.Errorf("encoding compare.json: %w", err))
	}
	if err := writeFileAtomic(filepath.Join(dir, "compare.json"), append(b, '\n')); err != nil {
		return res, errors.Join(runErr, err)
	}
	if err := report.WriteCompare(dir); err != nil {
		// Like a run's report: the numbers are in compare.json already.
		fmt.Fprintf(progress, "warning: compare.html: %v\n", err)
	}
	// The runs rewrote the index before compare.html existed: again, so it
	// links this comparison.
	if err := report.WriteIndex(base.Out); err != nil {
		fmt.Fprintf(progress, "warning: %s: %v\n", filepath.Join(base.Out, "index.html"), err)
	}
	return res, runErr
}

// Verdict is the worst verdict of the runs: illegal if any run is, ok only
// if every store ran and every run is ok, unknown otherwise.
func (r *CompareResult) Verdict() string {
	v := string(histories.VerdictOK)
	if len(r.Runs) == 0 {
		return string(histories.VerdictUnknown)
	}
	for _, cr := range r.Runs {
		switch {
		case cr.Verdict == string(histories.VerdictIllegal):
			return cr.Verdict
		case cr.Verdict != string(histories.VerdictOK) || cr.Err != nil:
			v = string(histories.VerdictUnknown)
		}
	}
	return v
}

// linkName is the run's link in the compare directory: the store's name,
// with a suffix when a store is compared with itself.
func linkName(store string, before []CompareRun) string {
	name := store
	for n := 2; slices.ContainsFunc(before, func(c CompareRun) bool { return c.Dir == name }); n++ {
		name = store + "-" + strconv.Itoa(n)
	}
	return name
}

// MakeRunDir creates out/base, or base.2, base.3, ... when it exists: the
// one way run, compare and sim directories are named, so two made in the
// same second never share one.
func MakeRunDir(out, base string) (string, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	for i := 1; ; i++ {
		dir := filepath.Join(out, base)
		if i > 1 {
			dir = fmt.Sprintf("%s.%d", dir, i)
		}
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, os.ErrExist) || i >= 1000 {
			return "", fmt.Errorf("creating %s: %w", dir, err)
		}
	}
}

// roleMapper maps roles from one store's vocabulary to another's, by job.
type roleMapper struct{ from, to []Role }

func (m roleMapper) Role(_ int, role string) string {
	if mapped, ok := MapRoleByJob(role, m.from, m.to); ok {
		return mapped
	}
	return role // refused before the comparison started (checkMappable)
}

// sameNodeMapper aims every step at the nodes the first run's step hit.
type sameNodeMapper struct {
	targets  map[int][]int
	fallback FaultMapper
}

func (m sameNodeMapper) Role(step int, role string) string {
	ts, ok := m.targets[step]
	if !ok || len(ts) != 1 {
		// Not applied in the first run, or several nodes (a minority, a
		// partition side): those roles do not name one node.
		return m.fallback.Role(step, role)
	}
	return "node:" + strconv.Itoa(ts[0])
}

func newMapper(targets string, from, to Driver, firstDir string) (FaultMapper, error) {
	rm := roleMapper{from: RolesOf(from), to: RolesOf(to)}
	if targets != TargetsSameNode {
		return rm, nil
	}
	ts, err := readInjectTargets(filepath.Join(firstDir, "nemesis.jsonl"))
	if err != nil {
		return rm, err
	}
	return sameNodeMapper{targets: ts, fallback: rm}, nil
}

// writeMappedSchedule copies the inject lines of the nemesis log from (the
// first run's) to to, with every fault's role translated for store `to`,
// for the nemesis to replay. Lines are rewritten as generic JSON, so fields
// this code does not know survive the copy.
func writeMappedSchedule(from, to, targets string, fromStore, toStore Driver) error {
	m, err := newMapper(targets, fromStore, toStore, filepath.Dir(from))
	if err != nil {
		return err
	}
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("schedule of the first run: %w", err)
	}
	var out []byte
	for n, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return fmt.Errorf("%s:%d: %w", from, n+1, err)
		}
		if e["event"] != "inject" {
			continue
		}
		step, _ := e["step"].(float64)
		spec, _ := e["spec"].(map[string]any)
		if spec == nil {
			return fmt.Errorf("%s:%d: inject without its spec: cannot replay", from, n+1)
		}
		role, _ := spec["role"].(string)
		if mapped := m.Role(int(step), role); mapped != "" {
			spec["role"] = mapped
			e["role"] = mapped
		}
		// What happened in the first run is not this run's: it resolves
		// its own targets.
		delete(e, "targets")
		delete(e, "error")
		delete(e, "skipped")
		delete(e, "grudge")
		delete(e, "cuts")
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		out = append(append(out, line...), '\n')
	}
	return writeFileAtomic(to, out)
}

// readInjectTargets reads, from a nemesis log, the nodes each applied
// inject hit, by schedule step. Only the few fields it needs are decoded,
// so the harness does not depend on the nemesis package.
func readInjectTargets(path string) (map[int][]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("same-node targets: %w", err)
	}
	defer f.Close()
	return parseInjectTargets(f)
}

func parseInjectTargets(r io.Reader) (map[int][]int, error) {
	out := map[int][]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for line := 1; sc.Scan(); line++ {
		var e struct {
			Step    int    `json:"step"`
			Fault   string `json:"fault"`
			Event   string `json:"event"`
			Targets []int  `json:"targets"`
			Error   string `json:"error"`
			Skipped bool   `json:"skipped"`
		}
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("nemesis log line %d: %w", line, err)
		}
		if e.Event != "inject" || e.Skipped || e.Error != "" || strings.HasPrefix(e.Fault, "zk") {
			continue
		}
		out[e.Step] = e.Targets
	}
	return out, sc.Err()
}
