package nemesis_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/chainraft/chainraft/nemesis"
)

// nodeTarget is a minimal Target, as the harness would write one around its
// node processes; here every action only prints.
type nodeTarget struct{ net *nemesis.Network }

func (t nodeTarget) Nodes() []int { return []int{1, 2, 3} }
func (t nodeTarget) Resolve(_ context.Context, role string) ([]int, error) {
	if role == nemesis.RoleLeader {
		return []int{2}, nil
	}
	return nil, fmt.Errorf("role %q: %w", role, nemesis.ErrUnsupported)
}
func (t nodeTarget) Kill(_ context.Context, n int) error { fmt.Println("SIGKILL node", n); return nil }
func (t nodeTarget) Restart(_ context.Context, n int) error {
	fmt.Println("restart node", n)
	return nil
}
func (t nodeTarget) Pause(context.Context, int) error  { return nemesis.ErrUnsupported }
func (t nodeTarget) Resume(context.Context, int) error { return nemesis.ErrUnsupported }
func (t nodeTarget) RemoveMember(context.Context, int) error {
	return fmt.Errorf("membership: %w", nemesis.ErrUnsupported)
}
func (t nodeTarget) AddMember(context.Context, int) error { return nemesis.ErrUnsupported }
func (t nodeTarget) Network() *nemesis.Network            { return t.net }
func (t nodeTarget) ZK() nemesis.ZKTarget                 { return nil }

// A fixed clock makes the example's output stable; a run passes the
// recorder's clock.
func fixedClock() int64 { return int64(1500 * time.Millisecond) }

func ExampleRunner() {
	steps := []nemesis.Step{
		// Zero offsets and durations, so that the fixed clock finds every
		// action already due; a real schedule spaces them by seconds.
		{ID: 1, Fault: nemesis.Fault{Kind: nemesis.KindKill, Role: nemesis.RoleLeader, Seed: 1}},
		{ID: 2, Fault: nemesis.Fault{Kind: nemesis.KindMember, Role: nemesis.RoleAny, Seed: 2}},
	}
	r := &nemesis.Runner{
		Target: nodeTarget{},
		Clock:  fixedClock,
		Events: nemesis.NewEventWriter(os.Stdout),
	}
	_ = r.Run(context.Background(), steps)
	_ = r.HealAll(context.Background())
	// Output:
	// SIGKILL node 2
	// {"time":1500000000,"step":1,"fault":"kill","event":"inject","role":"leader","targets":[2],"spec":{"kind":"kill","role":"leader","seed":1}}
	// {"time":1500000000,"step":2,"fault":"member","event":"inject","role":"any","targets":[2],"error":"member node 2: membership: nemesis: unsupported","skipped":true,"spec":{"kind":"member","role":"any","seed":2}}
	// restart node 2
	// {"time":1500000000,"step":1,"fault":"kill","event":"heal","role":"leader","targets":[2]}
}
