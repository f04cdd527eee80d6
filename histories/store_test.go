package histories

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The store gives back each key's kept operations exactly, whether they
// stayed in memory or went through the spill file, interned or inline.
func TestStoreRoundTrip(t *testing.T) {
	oldLimit, oldInterned := spillLimit, maxInterned
	t.Cleanup(func() { spillLimit, maxInterned = oldLimit, oldInterned })
	ops := genHistory(genConfig{ops: 3000, clients: 16, keys: 7, unknown: 0.05, put: 0.2, cas: 0.1, append: 0.2, seed: 5})
	for i := range ops {
		ops[i].Node = fmt.Sprintf("n%d", i%3)
		if i%5 == 0 {
			ops[i].Error = fmt.Sprintf("error %d", i) // past maxInterned: inline
		}
		if i%7 == 0 && ops[i].Outcome == OK && ops[i].Op != Get {
			ops[i].Outcome, ops[i].Found, ops[i].Swapped = Fail, false, false
		}
	}
	for _, limit := range []int{1 << 30, 512} {
		spillLimit, maxInterned = limit, 50
		st := newOpStore(t.TempDir())
		want := map[string][]Operation{}
		for _, op := range ops {
			require.NoError(t, st.add(op))
			if op.Outcome == Fail || (op.Outcome == Info && op.Op == Get) {
				continue
			}
			want[op.Key] = append(want[op.Key], op)
		}
		require.Equal(t, limit < 1<<30, st.spill != nil, "spilled")
		require.Equal(t, len(ops), st.ops)
		for i, k := range st.keys {
			got, err := st.load(i)
			require.NoError(t, err)
			require.Equal(t, want[k.key], got, "key %s, limit %d", k.key, limit)
		}
		st.close()
	}
}

// Spilling and small batches change nothing in the result.
func TestCheckFileSpillsAndBatches(t *testing.T) {
	oldLimit, oldBatch := spillLimit, batchOps
	t.Cleanup(func() { spillLimit, batchOps = oldLimit, oldBatch })
	for _, bad := range []int{0, 3} {
		path := filepath.Join(t.TempDir(), "h.jsonl")
		f, err := os.Create(path)
		require.NoError(t, err)
		w := NewWriter(f)
		require.NoError(t, Generate(GenConfig{Ops: 20_000, Clients: 16, Keys: 20, Unknown: 0.01, Put: 0.3, CAS: 0.1, Append: 0.1, Seed: 9, Bad: bad}, w.Write))
		require.NoError(t, w.Flush())
		require.NoError(t, f.Close())

		opts := CheckOptions{Budget: time.Minute, VisualizeDir: t.TempDir()}
		want, err := CheckFile(context.Background(), path, opts)
		require.NoError(t, err)
		spillLimit, batchOps = 4096, 1500
		opts.VisualizeDir = t.TempDir()
		got, err := CheckFile(context.Background(), path, opts)
		spillLimit, batchOps = oldLimit, oldBatch
		require.NoError(t, err)
		if bad == 0 {
			require.Equal(t, VerdictOK, want.Verdict)
		} else {
			require.Equal(t, VerdictIllegal, want.Verdict)
			require.NotEmpty(t, got.Visualizations)
		}
		require.Equal(t, want.Verdict, got.Verdict)
		require.Equal(t, want.Operations, got.Operations)
		require.Equal(t, want.Pruned, got.Pruned)
		require.Equal(t, want.Bounded, got.Bounded)
		require.Len(t, got.Keys, len(want.Keys))
		for i := range want.Keys {
			require.Equal(t, want.Keys[i].Key, got.Keys[i].Key)
			require.Equal(t, want.Keys[i].Verdict, got.Keys[i].Verdict)
			require.Equal(t, want.Keys[i].Ops, got.Keys[i].Ops)
			require.Equal(t, want.Keys[i].Visualization != "", got.Keys[i].Visualization != "")
		}
	}
}

// A file whose clients' operations are out of order makes ScanFile's
// lean check give way to the full one: every operation still comes
// exactly once, as the full Reader gives them, and an overlap is reported
// at the same line with the same message.
func TestScanFileOutOfOrder(t *testing.T) {
	lines := []string{
		`{"client":0,"op":"put","key":"k","value":"a","call":10,"return":20,"outcome":"ok"}`,
		`{"client":1,"op":"get","key":"k","call":12,"return":14,"outcome":"ok","found":false}`,
		`{"client":0,"op":"put","key":"k","value":"b","call":1,"return":5,"outcome":"ok"}`,
		`{"client":1,"op":"append","key":"k","value":"c","call":30,"outcome":"invoke"}`,
		`{"client":0,"op":"get","key":"k","call":25,"return":26,"outcome":"ok","found":true,"output":"a"}`,
	}
	full := func(text string) ([]Operation, error) {
		r := NewReader(bytes.NewReader([]byte(text)), "h")
		var ops []Operation
		for {
			op, err := r.Next()
			if err == io.EOF {
				return ops, nil
			}
			if err != nil {
				return ops, err
			}
			ops = append(ops, op)
		}
	}
	scan := func(text string) ([]Operation, error) {
		path := filepath.Join(t.TempDir(), "h")
		require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
		var ops []Operation
		err := ScanFile(path, func(op Operation) error { ops = append(ops, op); return nil })
		if ie, ok := err.(*InputError); ok {
			ie.File = "h"
		}
		return ops, err
	}
	text := ""
	for _, l := range lines {
		text += l + "\n"
	}
	want, err := full(text)
	require.NoError(t, err)
	require.Len(t, want, 5)
	got, err := scan(text)
	require.NoError(t, err)
	require.Equal(t, want, got)

	// Client 0's put at 1..5 now overlaps its first put.
	bad := text + `{"client":0,"op":"put","key":"k","value":"d","call":15,"return":16,"outcome":"ok"}` + "\n"
	_, wantErr := full(bad)
	require.Error(t, wantErr)
	got, err = scan(bad)
	require.Equal(t, wantErr, err)
	require.Len(t, got, 4, "the operations before the bad line, once each")
}
