// Package memdriver is the memory store's driver: one in-process kv.Memory,
// linearizable by construction. It is the control of every comparison (a
// harness that flags it is broken) and the cheapest way to measure what the
// harness itself costs. It has no nodes, so nothing for a nemesis to fault,
// no read modes and no seeded bugs: it implements none of the optional
// capabilities, and the harness refuses what would need them.
package memdriver

import (
	"context"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/kv"
)

func init() { harness.RegisterDriver(Driver{}) }

// Driver starts memory clusters.
type Driver struct{}

// Name implements harness.Driver.
func (Driver) Name() string { return "memory" }

// Start implements harness.Driver.
func (Driver) Start(context.Context, harness.Env) (harness.Cluster, error) {
	return &cluster{m: kv.NewMemory()}, nil
}

type cluster struct{ m *kv.Memory }

func (c *cluster) NewClient() (kv.KV, error) { return c.m.Session(), nil }
func (c *cluster) Close() error              { return nil }
