package harness

import (
	"context"

	"github.com/chainraft/chainraft/kv"
)

func init() {
	RegisterStore("memory", func(context.Context, ClusterConfig) (Cluster, error) {
		return &memoryCluster{m: kv.NewMemory()}, nil
	})
}

// memoryCluster is the control: one in-process kv.Memory.
type memoryCluster struct{ m *kv.Memory }

func (c *memoryCluster) NewClient() (kv.KV, error) { return c.m.Session(), nil }
func (c *memoryCluster) Close() error              { return nil }
