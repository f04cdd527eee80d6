package chainrafttest

// The stores these tests run, registered as in cmd/chainraft/stores.go.
import (
	_ "github.com/chainraft/chainraft/chain/chaindriver"
	_ "github.com/chainraft/chainraft/etcd"
	_ "github.com/chainraft/chainraft/kv/memdriver"
	_ "github.com/chainraft/chainraft/raftkv/raftdriver"
	_ "github.com/chainraft/chainraft/zookeeper"
)
