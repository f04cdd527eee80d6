package kv

import (
	"context"
	"sync"
)

// Memory is a single-node linearizable store: every operation takes one
// mutex, so its linearization point is inside the lock. Safe for concurrent
// use; [Memory.Session] hands out per-client views that satisfy [KV].
type Memory struct {
	mu   sync.Mutex
	data map[string]string
}

// NewMemory returns an empty store.
func NewMemory() *Memory { return &Memory{data: make(map[string]string)} }

// Session returns a KV view of the store for one client.
func (m *Memory) Session() KV { return m }

// Get implements KV.
func (m *Memory) Get(ctx context.Context, key string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, Definite(err)
	}
	m.mu.Lock()
	v, ok := m.data[key]
	m.mu.Unlock()
	return v, ok, nil
}

// Put implements KV.
func (m *Memory) Put(ctx context.Context, key, value string) error {
	if err := ctx.Err(); err != nil {
		return Definite(err)
	}
	m.mu.Lock()
	m.data[key] = value
	m.mu.Unlock()
	return nil
}

// Append implements KV.
func (m *Memory) Append(ctx context.Context, key, value string) error {
	if err := ctx.Err(); err != nil {
		return Definite(err)
	}
	m.mu.Lock()
	m.data[key] += value
	m.mu.Unlock()
	return nil
}

// CAS implements KV.
func (m *Memory) CAS(ctx context.Context, key, expect, value string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, Definite(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.data[key]
	if !ok || cur != expect {
		return false, nil
	}
	m.data[key] = value
	return true, nil
}

// Snapshot returns a copy of the data, for end-of-run comparisons.
func (m *Memory) Snapshot() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.data))
	for k, v := range m.data {
		out[k] = v
	}
	return out
}
