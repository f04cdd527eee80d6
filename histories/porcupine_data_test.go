package histories

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The porcupine module ships real Jepsen etcd register histories and 6.824
// KV histories, and its own tests state which are linearizable. These tests
// convert them to chainraft's format (in memory; nothing is committed) and
// require the same verdicts.

// porcupineDir finds the module in the module cache (`make deps` downloads it).
func porcupineDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/anishathalye/porcupine").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("porcupine module source not found (go list: %v); run `make deps` or `go mod download github.com/anishathalye/porcupine`", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "test_data")); err != nil {
		t.Skipf("porcupine module at %s has no test_data: %v", dir, err)
	}
	return dir
}

// upstreamExpectations reads porcupine_test.go for the verdicts its tests
// assert: calls like checkJepsen(t, 7, true) and checkKv(t, "c10-ok", true, true).
func upstreamExpectations(t *testing.T, dir string, re *regexp.Regexp) map[string]bool {
	src, err := os.ReadFile(filepath.Join(dir, "porcupine_test.go"))
	require.NoError(t, err)
	want := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		want[m[1]] = m[2] == "true"
	}
	return want
}

var jepsenLine = regexp.MustCompile(`^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*?)\s*$`)

// convertJepsenEtcd turns a Jepsen CAS-register log into operations on key
// "r". Times are line numbers. A cas answered :fail completed without
// swapping; an :info (timed out) write or cas is unknown, as is anything
// still pending at the end; Jepsen gives the process a new id after :info.
func convertJepsenEtcd(t *testing.T, path string) []Operation {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	pending := map[int]Operation{}
	var ops []Operation
	sc := bufio.NewScanner(f)
	for n := int64(1); sc.Scan(); n++ {
		m := jepsenLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		proc, _ := strconv.Atoi(m[1])
		typ, f, arg := m[2], m[3], m[4]
		if typ == "invoke" {
			op := Operation{Client: proc, Key: "r", Call: n}
			switch f {
			case "read":
				op.Op = Get
			case "write":
				op.Op, op.Value = Put, arg
			case "cas":
				var from, to int
				_, err := fmt.Sscanf(arg, "[%d %d]", &from, &to)
				require.NoError(t, err, "line %d", n)
				op.Op, op.Expect, op.Value = CAS, strconv.Itoa(from), strconv.Itoa(to)
			}
			pending[proc] = op
			continue
		}
		op, ok := pending[proc]
		require.True(t, ok, "%s:%d: completion without invoke", path, n)
		delete(pending, proc)
		switch {
		case typ == "info":
			op.Outcome = Info
		case typ == "fail" && f == "cas":
			op.Outcome, op.Return = OK, n
		case typ == "fail":
			op.Outcome, op.Return = Fail, n
		default:
			op.Outcome, op.Return = OK, n
			switch f {
			case "read":
				if arg != "nil" {
					op.Found, op.Output = true, arg
				}
			case "cas":
				op.Swapped = true
			}
		}
		ops = append(ops, op)
	}
	require.NoError(t, sc.Err())
	for _, op := range pending {
		op.Outcome = Info
		ops = append(ops, op)
	}
	return ops
}

func TestJepsenEtcdHistories(t *testing.T) {
	dir := porcupineDir(t)
	want := upstreamExpectations(t, dir, regexp.MustCompile(`checkJepsen\(t,\s*(\d+),\s*(true|false)\)`))
	require.GreaterOrEqual(t, len(want), 100, "porcupine_test.go no longer lists its Jepsen expectations")
	counts := map[Verdict]int{}
	for num, linearizable := range want {
		n, _ := strconv.Atoi(num)
		path := filepath.Join(dir, "test_data", "jepsen", fmt.Sprintf("etcd_%03d.log", n))
		ops := convertJepsenEtcd(t, path)
		require.NotEmpty(t, ops, path)
		require.NoError(t, ValidateAll(ops), path)
		res, err := Check(context.Background(), ops, CheckOptions{Budget: 30 * time.Second})
		require.NoError(t, err)
		expect := VerdictIllegal
		if linearizable {
			expect = VerdictOK
		}
		require.Equal(t, expect, res.Verdict, path)
		require.Zero(t, res.Pruned, "values repeat: nothing may be pruned (%s)", path)
		counts[res.Verdict]++
	}
	t.Logf("etcd histories: %v", counts)
}

var (
	kvInvoke = regexp.MustCompile(`^\{:process (\d+), :type :invoke, :f :(get|put|append), :key "(.*)", :value (?:nil|"(.*)")\}$`)
	kvOk     = regexp.MustCompile(`^\{:process (\d+), :type :ok, :f :(get|put|append), :key "(.*)", :value (?:nil|"(.*)")\}$`)
)

// convertKV turns a 6.824 KV log into operations. Those stores answer "" for
// a missing key and no test writes "", so a read of "" is an absent key.
func convertKV(t *testing.T, path string) []Operation {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	pending := map[int]Operation{}
	var ops []Operation
	sc := bufio.NewScanner(f)
	for n := int64(1); sc.Scan(); n++ {
		line := sc.Text()
		if m := kvInvoke.FindStringSubmatch(line); m != nil {
			proc, _ := strconv.Atoi(m[1])
			op := Operation{Client: proc, Op: Kind(m[2]), Key: m[3], Call: n}
			if op.Op != Get {
				require.NotEmpty(t, m[4], "%s:%d: a write of \"\" breaks the absent-key reading", path, n)
				op.Value = m[4]
			}
			pending[proc] = op
		} else if m := kvOk.FindStringSubmatch(line); m != nil {
			proc, _ := strconv.Atoi(m[1])
			op, ok := pending[proc]
			require.True(t, ok, "%s:%d: completion without invoke", path, n)
			delete(pending, proc)
			op.Outcome, op.Return = OK, n
			if op.Op == Get && m[4] != "" {
				op.Found, op.Output = true, m[4]
			}
			ops = append(ops, op)
		}
	}
	require.NoError(t, sc.Err())
	for _, op := range pending {
		op.Outcome = Info
		ops = append(ops, op)
	}
	return ops
}

func TestKVHistories(t *testing.T) {
	dir := porcupineDir(t)
	want := upstreamExpectations(t, dir, regexp.MustCompile(`checkKv\(t,\s*"([^"]+)",\s*(true|false),\s*true\)`))
	require.Len(t, want, 6, "porcupine_test.go no longer lists its KV expectations")
	for name, linearizable := range want {
		ops := convertKV(t, filepath.Join(dir, "test_data", "kv", name+".txt"))
		require.NoError(t, ValidateAll(ops), name)
		res, err := Check(context.Background(), ops, CheckOptions{Budget: 30 * time.Second})
		require.NoError(t, err)
		expect := VerdictIllegal
		if linearizable {
			expect = VerdictOK
		}
		require.Equal(t, expect, res.Verdict, name)
		t.Logf("%s: %s, %d keys, %d ops, %v", name, res.Verdict, len(res.Keys), len(ops), res.Elapsed)
	}
}
