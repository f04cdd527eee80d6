package chain

import (
	"github.com/go-zookeeper/zk"

	"github.com/chainraft/chainraft/zkrecipes"
)

// ZKConn is the part of *zk.Conn the chain's coordination uses: the
// coordinator's registration, lease, configuration watches, the master's
// reads and fenced Multi writes, and the election recipe's sequential
// znodes. It exists so that the same coordination code can run against the
// deterministic simulator's ZooKeeper (package sim, zk.go: sessions and
// their expiry, ephemeral and sequential znodes, one-shot watches,
// versioned Multi) as well as a real ensemble. *zk.Conn satisfies it as it
// is. It holds zkrecipes.Conn's methods, so the master election
// (zkrecipes.Candidacy) runs on it too.
type ZKConn interface {
	Create(path string, data []byte, flags int32, acl []zk.ACL) (string, error)
	Delete(path string, version int32) error
	Exists(path string) (bool, *zk.Stat, error)
	ExistsW(path string) (bool, *zk.Stat, <-chan zk.Event, error)
	Get(path string) ([]byte, *zk.Stat, error)
	GetW(path string) ([]byte, *zk.Stat, <-chan zk.Event, error)
	Set(path string, data []byte, version int32) (*zk.Stat, error)
	Children(path string) ([]string, *zk.Stat, error)
	ChildrenW(path string) ([]string, *zk.Stat, <-chan zk.Event, error)
	Multi(ops ...any) ([]zk.MultiResponse, error)
	Sync(path string) (string, error)
	SessionID() int64
	Close()
}

var (
	_ ZKConn         = (*zk.Conn)(nil)
	_ zkrecipes.Conn = ZKConn(nil)
)
