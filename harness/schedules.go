package harness

// Fair schedules. A seeded schedule draws roles at random, so two stores
// under "the same faults" can take different blows: a raft follower killed
// (raft does not notice) against a chain node that sits in every chain
// (every chain stalls). The critical schedule aims every fault at the
// store's most critical role instead — by convention the first role its
// driver lists (raft's leader, the chain's head) — and deals each blow
// once: killed, paused, cut off. Compare replays the first store's
// schedule on the others with roles mapped by job, so the leader's faults
// land on the head, the role that orders writes there too.

import (
	"fmt"
	"slices"
	"time"

	"github.com/chainraft/chainraft/nemesis"
)

// NemesisCritical is the --nemesis value that asks for CriticalSteps.
const NemesisCritical = "critical"

// CriticalSteps is the critical schedule of d over a workload of total:
// after a quiet interval, its first role killed, then paused, then
// isolated by a partition, each for interval with an interval between, so
// that each fault's recovery has an interval before the next begins and
// the last heal leaves an interval before the end. It refuses a total too
// short for all three, and a driver with no roles or without the kinds.
func CriticalSteps(d Driver, interval, total time.Duration) ([]nemesis.Step, error) {
	fd, ok := d.(FaultDriver)
	if !ok || len(fd.Roles()) == 0 {
		return nil, fmt.Errorf("%w: --nemesis %s: the %s store has no roles to aim at", ErrInvalidConfig, NemesisCritical, d.Name())
	}
	role := fd.Roles()[0].Name
	faults := []nemesis.Fault{
		{Kind: nemesis.KindKill, Role: role},
		{Kind: nemesis.KindPause, Role: role},
		{Kind: nemesis.KindPartition, Shape: nemesis.ShapeIsolate, Role: role},
	}
	if need := time.Duration(2*len(faults)+1) * interval; total < need {
		return nil, fmt.Errorf("%w: --nemesis %s with --nemesis-interval %v needs --time-limit of at least %v (a quiet interval, then kill, pause and partition, each an interval long with an interval after it), got %v",
			ErrInvalidConfig, NemesisCritical, interval, need, total)
	}
	var steps []nemesis.Step
	for i, f := range faults {
		f.Seed = int64(i + 1)
		steps = append(steps, nemesis.Step{ID: i + 1, At: time.Duration(2*i+1) * interval, Duration: interval, Fault: f})
	}
	for _, st := range steps {
		if !slices.Contains(fd.FaultKinds(), st.Fault.Kind) {
			return nil, fmt.Errorf("%w: --nemesis %s: the %s store cannot take %s faults", ErrInvalidConfig, NemesisCritical, d.Name(), st.Fault.Kind)
		}
	}
	return steps, nil
}

// RoleRow is one line of the role table compare prints and compare.json
// keeps (report.RoleRow reads it): a role of one store, its jobs, whether
// it is the store's most critical role, and the role of every other store
// that a fault aimed at it hits (MapRoleByJob; "" when none does its jobs).
type RoleRow struct {
	Store    string            `json:"store"`
	Role     string            `json:"role"`
	Jobs     []string          `json:"jobs"`
	Critical bool              `json:"critical,omitempty"`
	MapsTo   map[string]string `json:"maps_to"`
}

// RoleTable maps every role of each driver onto each other driver's.
func RoleTable(ds []Driver) []RoleRow {
	var rows []RoleRow
	for _, from := range ds {
		for i, r := range RolesOf(from) {
			row := RoleRow{Store: from.Name(), Role: r.Name, Jobs: r.Jobs, Critical: i == 0, MapsTo: map[string]string{}}
			for _, to := range ds {
				if to.Name() == from.Name() {
					continue
				}
				mapped, _ := MapRoleByJob(r.Name, RolesOf(from), RolesOf(to))
				row.MapsTo[to.Name()] = mapped
			}
			rows = append(rows, row)
		}
	}
	return rows
}
