// Package zookeeper is chainraft's driver for a real ZooKeeper ensemble
// as the store under test: `--store zookeeper`.
package zookeeper
