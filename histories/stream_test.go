package histories

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStreamRecorderWritesWhatRecorderKeeps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	r, err := NewStreamRecorder(path)
	require.NoError(t, err)
	a, b := r.Session(), r.Session()
	a.Begin(Operation{Op: Put, Key: "k", Value: "a1"})
	put := a.End(Operation{Op: Put, Key: "k", Value: "a1", Outcome: OK, Node: "n1"})
	b.Begin(Operation{Op: Get, Key: "k"})
	get := b.End(Operation{Op: Get, Key: "k", Outcome: OK, Found: true, Output: "a1"})
	a.Begin(Operation{Op: Append, Key: "k", Value: "a2"})
	info := a.End(Operation{Op: Append, Key: "k", Value: "a2", Outcome: Info, Error: "timeout"})
	a.Begin(Operation{Op: CAS, Key: "k", Expect: "a1", Value: "a3"}) // in flight at Close
	require.Empty(t, r.Operations()[:0])
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "a second Close returns the first's result")
	a.End(Operation{Op: CAS, Key: "k", Expect: "a1", Value: "a3", Outcome: OK, Swapped: true}) // after Close: dropped

	ops, err := ReadFile(path)
	require.NoError(t, err)
	require.Len(t, ops, 4)
	require.Equal(t, []Operation{put, get, info}, ops[:3])
	require.Equal(t, Operation{Client: 2, Op: CAS, Key: "k", Expect: "a1", Value: "a3", Call: ops[3].Call, Outcome: Info, Error: InFlightError}, ops[3])
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, 3, strings.Count(string(raw), `"outcome":"invoke"`), "an invoke line for each write, none for reads")
}

func TestReaderInvokeLines(t *testing.T) {
	read := func(lines ...string) ([]Operation, error) {
		r := NewReader(strings.NewReader(strings.Join(lines, "\n")+"\n"), "h.jsonl")
		var ops []Operation
		for {
			op, err := r.Next()
			if err != nil {
				if errors.Is(err, io.EOF) {
					return ops, nil
				}
				return ops, err
			}
			ops = append(ops, op)
		}
	}
	ops, err := read(
		`{"client":0,"op":"put","key":"k","value":"a","call":10,"outcome":"invoke"}`,
		`{"client":1,"op":"append","key":"k","value":"b","call":12,"outcome":"invoke"}`,
		`{"client":2,"op":"get","key":"k","call":13,"return":20,"outcome":"ok","found":true,"output":"ab"}`,
		`{"client":0,"op":"put","key":"k","value":"a","call":10,"return":30,"outcome":"ok"}`,
	)
	require.NoError(t, err)
	require.Equal(t, []Operation{
		{Client: 2, Op: Get, Key: "k", Call: 13, Return: 20, Outcome: OK, Found: true, Output: "ab"},
		{Client: 0, Op: Put, Key: "k", Value: "a", Call: 10, Return: 30, Outcome: OK},
		{Client: 1, Op: Append, Key: "k", Value: "b", Call: 12, Outcome: Info, Error: NoCompletionError},
	}, ops, "completions replace invoke lines; an invoke line without one is unknown, last")

	for name, c := range map[string]struct {
		lines []string
		line  int
		msg   string
	}{
		"return on invoke": {[]string{`{"client":0,"op":"put","key":"k","value":"a","call":1,"return":2,"outcome":"invoke"}`}, 1, `"return" on an invoke line`},
		"result on invoke": {[]string{`{"client":0,"op":"get","key":"k","call":1,"outcome":"invoke","found":true}`}, 1, "result fields"},
		"other completion": {[]string{
			`{"client":0,"op":"put","key":"k","value":"a","call":1,"outcome":"invoke"}`,
			`{"client":0,"op":"put","key":"k","value":"b","call":1,"return":2,"outcome":"ok"}`}, 2, "another operation"},
		"invoked twice": {[]string{
			`{"client":0,"op":"put","key":"k","value":"a","call":1,"outcome":"invoke"}`,
			`{"client":0,"op":"put","key":"k","value":"a","call":1,"outcome":"invoke"}`}, 2, "invoked twice"},
		"client busy": {[]string{
			`{"client":0,"op":"put","key":"k","value":"a","call":1,"outcome":"invoke"}`,
			`{"client":0,"op":"get","key":"k","call":5,"return":6,"outcome":"ok"}`}, 1, "overlaps its own operation at line 2"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := read(c.lines...)
			var ie *InputError
			require.True(t, errors.As(err, &ie), "got %v", err)
			require.Equal(t, c.line, ie.Line, err.Error())
			require.Contains(t, ie.Msg, c.msg)
		})
	}
}

// recordingChildEnv makes the test binary a recording harness (see
// TestStreamRecorderSurvivesSIGKILL): the file to record to.
const recordingChildEnv = "CHAINRAFT_TEST_RECORDING_CHILD"

// childReadyOps is how many operations the child completes before it says
// "ready"; everything up to then must survive the kill.
const childReadyOps = 20_000

// TestStreamRecorderSurvivesSIGKILL runs this test binary as a recording
// harness (a linearizable in-memory store whose writes take effect before
// they are ended, so reads see writes still in flight), SIGKILLs it while
// it records, and checks what it left: a history the reader accepts, that
// holds every operation completed before the child said it was ready, and
// that checks linearizable.
func TestStreamRecorderSurvivesSIGKILL(t *testing.T) {
	if os.Getenv(recordingChildEnv) != "" {
		t.Skip("the child runs TestRecordingChild")
	}
	path := filepath.Join(t.TempDir(), "history.jsonl")
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecordingChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), recordingChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if sc.Text() == "ready" {
			ready = true
			break
		}
	}
	require.True(t, ready, "the child ended without saying ready: %v", sc.Err())
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	killed = true
	err = cmd.Wait()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "got %v", err)
	require.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal())

	ops, err := ReadFile(path)
	require.NoError(t, err)
	completed, uncompleted := 0, 0
	for _, op := range ops {
		switch {
		case op.Error == NoCompletionError:
			uncompleted++
		case op.Outcome == OK:
			completed++
		}
	}
	require.GreaterOrEqual(t, completed, childReadyOps, "operations completed before ready were flushed")
	t.Logf("%d operations (%d ok, %d invoked without completion)", len(ops), completed, uncompleted)
	res, err := Check(context.Background(), ops, CheckOptions{Budget: time.Minute})
	require.NoError(t, err)
	require.Equal(t, VerdictOK, res.Verdict, "keys: %+v", res.Keys)
}

// TestRecordingChild is the child of TestStreamRecorderSurvivesSIGKILL:
// it records until it is killed.
func TestRecordingChild(t *testing.T) {
	path := os.Getenv(recordingChildEnv)
	if path == "" {
		t.Skip("only as the child of TestStreamRecorderSurvivesSIGKILL")
	}
	r, err := NewStreamRecorder(path)
	require.NoError(t, err)
	var mu sync.Mutex
	store := map[string]string{}
	var wg sync.WaitGroup
	var count sync.Mutex
	n := 0
	for c := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			s := r.Session()
			for seq := 0; ; seq++ {
				key := fmt.Sprintf("k%d", rng.IntN(4))
				v := fmt.Sprintf("c%d-%d", c, seq)
				var op Operation
				switch rng.IntN(4) {
				case 0:
					op = Operation{Op: Put, Key: key, Value: v}
				case 1:
					op = Operation{Op: Append, Key: key, Value: v}
				default:
					op = Operation{Op: Get, Key: key}
				}
				s.Begin(op)
				mu.Lock()
				old, found := store[key]
				switch op.Op {
				case Put:
					store[key] = v
				case Append:
					store[key] = old + v
				}
				mu.Unlock()
				if op.Op != Get && rng.IntN(8) == 0 {
					runtime.Gosched() // in effect, not yet ended: others may read it
				}
				op.Outcome = OK
				if op.Op == Get {
					op.Found, op.Output = found, old
				}
				s.End(op)
				count.Lock()
				n++
				if n == childReadyOps {
					go func() {
						time.Sleep(3 * StreamFlushInterval)
						fmt.Println("ready")
					}()
				}
				count.Unlock()
			}
		})
	}
	wg.Wait() // never: the parent kills this process
}

func TestReaderIgnoresTornLastLine(t *testing.T) {
	whole := `{"client":0,"op":"put","key":"k","value":"a","call":1,"return":2,"outcome":"ok"}` + "\n"
	r := NewReader(strings.NewReader(whole+`{"client":1,"op":"get","ke`), "h.jsonl")
	op, err := r.Next()
	require.NoError(t, err)
	require.Equal(t, "a", op.Value)
	_, err = r.Next()
	require.Equal(t, io.EOF, err)
	require.True(t, r.Torn)

	// Only the last line, and only without its newline, counts as torn.
	r = NewReader(strings.NewReader(`{"client":1,"op":"get","ke`+"\n"+whole), "h.jsonl")
	_, err = r.Next()
	var ie *InputError
	require.True(t, errors.As(err, &ie), "got %v", err)
	require.Equal(t, 1, ie.Line)
	r = NewReader(strings.NewReader(whole+`{"client":1,"op":"get","ke`+"\n"), "h.jsonl")
	_, _ = r.Next()
	_, err = r.Next()
	require.True(t, errors.As(err, &ie), "got %v", err)
	require.Equal(t, 2, ie.Line)
}
