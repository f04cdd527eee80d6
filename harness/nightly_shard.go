package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/chainraft/chainraft/harness/report"
)

// A night may be shared by several runners (`make nightly SHARD=i/N`, the
// nightly workflow's matrix): each runs a fixed part of the matrix into
// the same night directory layout, and one merge step sums the parts up.
// The split is by an item's place in a round's fixed order, so a given
// seeded bug or store × fault mix always lands on the same shard: each
// bug's runs stay in the order they ran, which its time to detection
// needs, and a night's shards can be told apart by what they ran.

// Shard is part i (1-based) of n of the nightly matrix.
type Shard struct{ I, N int }

// ParseShard reads "i/N" (1 ≤ i ≤ N); "" is the whole matrix (1/1).
func ParseShard(s string) (Shard, error) {
	if s == "" {
		return Shard{I: 1, N: 1}, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 1 || i > n {
		return Shard{}, fmt.Errorf("shard %q: want i/N with 1 ≤ i ≤ N, e.g. 2/4", s)
	}
	return Shard{I: i, N: n}, nil
}

// Owns reports whether the shard runs item k (0-based) of a round.
func (s Shard) Owns(k int) bool { return s.N <= 1 || k%s.N == s.I-1 }

// Name names the shard's files in a night directory: "" for the whole
// matrix, else "-shard-i-of-N".
func (s Shard) Name() string {
	if s.N <= 1 {
		return ""
	}
	return fmt.Sprintf("-shard-%d-of-%d", s.I, s.N)
}

// ShardNight is what one shard ran: <night dir>/shard-i-of-N.json beside
// its runs-shard-i-of-N.jsonl.
type ShardNight struct {
	Shard    string  `json:"shard"` // "i/N"
	BudgetS  float64 `json:"budget_s"`
	ElapsedS float64 `json:"elapsed_s"`
	Commit   string  `json:"commit,omitempty"`
	Runs     int     `json:"runs"`
}

// WriteShardNight records a shard's end in dir.
func WriteShardNight(dir string, sh Shard, rec ShardNight) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, strings.TrimPrefix(sh.Name(), "-")+".json"), append(b, '\n'), 0o644)
}

// ReadNightRuns reads every runs*.jsonl in a night directory (one per
// shard, or one runs.jsonl), shard files in shard order, and the shards'
// records. A torn last line (a runner killed mid-write) is ignored.
func ReadNightRuns(dir string) ([]NightRun, []ShardNight, error) {
	files, err := filepath.Glob(filepath.Join(dir, "runs*.jsonl"))
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("%s: no runs*.jsonl: no shard of this night finished a run", dir)
	}
	sort.Slice(files, func(a, b int) bool { return shardOrder(files[a]) < shardOrder(files[b]) })
	var runs []NightRun
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		for n, l := range lines {
			if strings.TrimSpace(l) == "" {
				continue
			}
			var r NightRun
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				if n == len(lines)-1 {
					break
				}
				return nil, nil, fmt.Errorf("%s line %d: %w", f, n+1, err)
			}
			runs = append(runs, r)
		}
	}
	var shards []ShardNight
	marks, _ := filepath.Glob(filepath.Join(dir, "shard-*.json"))
	sort.Slice(marks, func(a, b int) bool { return shardOrder(marks[a]) < shardOrder(marks[b]) })
	for _, m := range marks {
		b, err := os.ReadFile(m)
		if err != nil {
			return nil, nil, err
		}
		var sn ShardNight
		if err := json.Unmarshal(b, &sn); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", m, err)
		}
		shards = append(shards, sn)
	}
	return runs, shards, nil
}

// shardOrder sorts "...shard-i-of-N..." file names by i.
func shardOrder(path string) int {
	base := filepath.Base(path)
	_, rest, ok := strings.Cut(base, "shard-")
	if !ok {
		return 0
	}
	i, _, _ := strings.Cut(rest, "-")
	n, _ := strconv.Atoi(i)
	return n
}

// NightOutputs is where a night's sum goes.
type NightOutputs struct {
	// TrendDir holds trend.jsonl (appended) and trend.html (redrawn).
	TrendDir string
	// README, when set, gets its "What it catches" table rewritten.
	README string
}

// FinishNight sums up the night in dir — every shard's runs — into rec
// (date, commit, budget set by the caller; elapsed and shards filled in
// from the shards' records when rec has none), appends it to the trend,
// redraws the trend page, writes dir/night.json, rewrites the README
// table and dir/index.html (every shard's run directories). It is the end
// of an unsharded night and the whole of the merge step of a sharded one.
func FinishNight(dir string, rec NightRecord, out NightOutputs) (NightRecord, []NightRun, error) {
	runs, shards, err := ReadNightRuns(dir)
	if err != nil {
		return rec, nil, err
	}
	if len(shards) > 0 {
		done := map[string]bool{}
		for _, sh := range shards {
			done[sh.Shard] = true
			rec.ElapsedS = max(rec.ElapsedS, sh.ElapsedS)
			rec.BudgetS = max(rec.BudgetS, sh.BudgetS)
			if rec.Commit == "" {
				rec.Commit = sh.Commit
			}
			if p, err := ParseShard(sh.Shard); err == nil {
				rec.Shards = max(rec.Shards, p.N)
			}
		}
		for i := 1; i <= rec.Shards; i++ {
			if name := fmt.Sprintf("%d/%d", i, rec.Shards); !done[name] {
				rec.MissingShards = append(rec.MissingShards, name)
			}
		}
	}
	rec.Dir = dir
	rec = SummarizeNight(rec, runs)
	trend := filepath.Join(out.TrendDir, "trend.jsonl")
	if err := AppendTrend(trend, rec); err != nil {
		return rec, runs, err
	}
	f, err := os.Open(trend)
	if err != nil {
		return rec, runs, err
	}
	nights, err := ReadTrend(f)
	f.Close()
	if err != nil {
		return rec, runs, err
	}
	var errs []error
	errs = append(errs, WriteTrendPage(filepath.Join(out.TrendDir, "trend.html"), nights))
	night, err := json.MarshalIndent(rec, "", "  ")
	errs = append(errs, err)
	if err == nil {
		errs = append(errs, os.WriteFile(filepath.Join(dir, "night.json"), append(night, '\n'), 0o644))
	}
	if out.README != "" {
		errs = append(errs, UpdateCatchesTable(out.README, rec))
	}
	errs = append(errs, report.WriteIndex(dir))
	return rec, runs, errors.Join(errs...)
}
