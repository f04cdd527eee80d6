package chain

import (
	"encoding/json"
	"fmt"

	"github.com/chainraft/chainraft/kv"
)

// Member is one node of a chain configuration: its id and the address its
// gRPC server listens on (client requests and peer messages alike).
type Member struct {
	ID   uint64 `json:"id"`
	Addr string `json:"addr"`
}

// Config is one chain's configuration as the master writes it to
// /chainraft/chains/<chain>. Members are in chain order: head first, tail
// last. Joining is a node being brought up to date behind the tail; it
// serves nothing and the tail does not wait for it, until the master
// appends it to Members. Epoch grows by one with every change, and every
// message between nodes carries it.
//
// Deposed lists nodes removed while their ZooKeeper session lived (the
// master suspected them on the data path, or moved them to restore the
// rotation) that answered reads in an older epoch — its tail, and with
// Placement.ReadAny every member — each with the epoch that removed it.
// Such a node may still answer reads at its old epoch until it sees the
// change, and its lease cannot stop it (its session is fine), so the tail
// of a configuration with a Deposed entry neither commits nor serves
// reads. The master drops an
// entry once the node reports (in its node znode) that it adopted that
// epoch or a later one, or once its session is gone; that drop is a new
// epoch, which frees the tail.
type Config struct {
	Chain   int       `json:"chain"`
	Epoch   uint64    `json:"epoch"`
	Members []Member  `json:"members"`
	Joining *Member   `json:"joining,omitempty"`
	Deposed []Deposed `json:"deposed,omitempty"`
}

// Deposed is a node removed from a chain while it lived, and the epoch
// that removed it (see Config).
type Deposed struct {
	ID    uint64 `json:"id"`
	Epoch uint64 `json:"epoch"`
}

// deposed reports whether the configuration names id deposed.
func (c Config) deposed(id uint64) bool {
	for _, d := range c.Deposed {
		if d.ID == id {
			return true
		}
	}
	return false
}

// Head is the chain's first member, or zero when the chain has none.
func (c Config) Head() Member {
	if len(c.Members) == 0 {
		return Member{}
	}
	return c.Members[0]
}

// Tail is the chain's last member, or zero when the chain has none.
func (c Config) Tail() Member {
	if len(c.Members) == 0 {
		return Member{}
	}
	return c.Members[len(c.Members)-1]
}

// index returns the position of id in Members, or -1.
func (c Config) index(id uint64) int {
	for i, m := range c.Members {
		if m.ID == id {
			return i
		}
	}
	return -1
}

// Encode is the JSON stored in ZooKeeper, readable with zkCli.sh.
func (c Config) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("chain: encoding config: %v", err))
	}
	return b
}

// DecodeConfig parses a configuration znode.
func DecodeConfig(b []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("decode chain config: %w", err)
	}
	return c, nil
}

// Placement is the static shape of the store: chain i's preferred members
// are nodes i+1, i+2, ..., i+Replicas (mod Nodes, ids starting at 1), so
// with 3 nodes and 3 replicas the chains are 123, 231 and 312 and every node
// heads one chain and is tail of another.
type Placement struct {
	Chains, Replicas, Nodes int
	// ReadAny lets every member answer reads (CRAQ, `--read-mode craq`),
	// not only the tail. It is the cluster's, not only its clients': the
	// master must then depose every member it removes while live (see
	// Config.Deposed), which costs a tail-read cluster a fence it does not
	// need, and a node that was not told refuses reads at members.
	ReadAny bool
}

// Validate rejects shapes the rotation cannot build.
func (p Placement) Validate() error {
	if p.Chains < 1 || p.Replicas < 1 || p.Nodes < 1 {
		return fmt.Errorf("chain: chains, replicas and nodes must be positive (got %d, %d, %d)", p.Chains, p.Replicas, p.Nodes)
	}
	if p.Replicas > p.Nodes {
		return fmt.Errorf("chain: %d replicas need at least as many nodes (got %d)", p.Replicas, p.Nodes)
	}
	return nil
}

// Members returns chain i's preferred members in chain order.
func (p Placement) Members(chain int) []uint64 {
	out := make([]uint64, p.Replicas)
	for j := range out {
		out[j] = uint64((chain+j)%p.Nodes) + 1
	}
	return out
}

// ChainOf maps a key to its chain: kv.ShardOf, which the raft store's
// groups share, so C chains and C raft groups split the keys alike.
func ChainOf(key string, chains int) int { return kv.ShardOf(key, chains) }
