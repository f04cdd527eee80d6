// Package etcd is chainraft's driver for real etcd: `--store etcd` runs
// --nodes etcd server processes from Debian's etcd-server package (3.4)
// and judges them with the same workload, nemesis, checker and end-of-run
// checks as the stores chainraft builds. Its init registers it
// (harness.RegisterDriver); cmd/chainraft imports it for that alone.
package etcd
