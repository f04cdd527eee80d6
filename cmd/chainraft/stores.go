package main

// Every store chainraft can run, one import line each: a driver registers
// itself (harness.RegisterDriver) from its package's init. A new store is a
// new folder with its driver and one line here.
import (
	_ "github.com/chainraft/chainraft/chain/chaindriver"
	_ "github.com/chainraft/chainraft/etcd"
	_ "github.com/chainraft/chainraft/kv/memdriver"
	_ "github.com/chainraft/chainraft/raftkv/raftdriver"
	_ "github.com/chainraft/chainraft/zookeeper"
)
