package nemesis

import (
	"fmt"
	"sort"
	"strings"
)

// Topology is what a cluster listens on: the real addresses behind the
// proxies. Keys are node ids and ZooKeeper server ids.
type Topology struct {
	Nodes map[int]string // store node id → its peer (or client) listen address
	// ClientAddrs, when a node serves clients on another port than peers
	// (node id → client address); empty means clients use Nodes.
	ClientAddrs map[int]string
	ZK          map[int]string // ZooKeeper server id → its client port address
}

// Wire adds to n one proxy per link a cluster of this topology uses: node→node
// for every ordered pair, node→ZooKeeper for every node and server, and
// client→node for every node. It returns the addresses each party must dial.
// On error, the proxies already added stay in n; closing n removes them.
func (n *Network) Wire(t Topology) (Wiring, error) {
	w := Wiring{Peers: map[int]map[int]string{}, ZK: map[int][]string{}, Clients: map[int]string{}}
	ids := sortedKeys(t.Nodes)
	zks := sortedKeys(t.ZK)
	for _, a := range ids {
		w.Peers[a] = map[int]string{}
		for _, b := range ids {
			if a == b {
				continue
			}
			p, err := n.Add(Link{From: NodeEndpoint(a), To: NodeEndpoint(b)}, t.Nodes[b])
			if err != nil {
				return w, err
			}
			w.Peers[a][b] = p.Addr()
		}
		for _, z := range zks {
			p, err := n.Add(Link{From: NodeEndpoint(a), To: ZKEndpoint(z)}, t.ZK[z])
			if err != nil {
				return w, err
			}
			w.ZK[a] = append(w.ZK[a], p.Addr())
		}
		target := t.Nodes[a]
		if c, ok := t.ClientAddrs[a]; ok {
			target = c
		}
		p, err := n.Add(Link{From: ClientEndpoint, To: NodeEndpoint(a)}, target)
		if err != nil {
			return w, err
		}
		w.Clients[a] = p.Addr()
	}
	return w, nil
}

// Wiring is the addresses to hand out so that every connection crosses the
// nemesis's proxies.
type Wiring struct {
	// Peers[a][b] is the address node a dials to reach node b.
	Peers map[int]map[int]string
	// ZK[a] lists the addresses of the ensemble's servers as node a must
	// dial them (one proxy per server), in server id order.
	ZK map[int][]string
	// Clients[a] is the address workload clients dial to reach node a.
	Clients map[int]string
}

// ZKConnect is node a's ZooKeeper connection string ("host:port,...").
func (w Wiring) ZKConnect(a int) string { return strings.Join(w.ZK[a], ",") }

// PeerList is node a's view of the cluster as "id=addr,..." in id order,
// its own entry being self (its real listen address).
func (w Wiring) PeerList(a int, self string) string {
	ids := append([]int{a}, sortedKeys(w.Peers[a])...)
	sort.Ints(ids)
	parts := make([]string, 0, len(ids))
	for _, id := range ids {
		addr := self
		if id != a {
			addr = w.Peers[a][id]
		}
		parts = append(parts, fmt.Sprintf("%d=%s", id, addr))
	}
	return strings.Join(parts, ",")
}

func sortedKeys(m map[int]string) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}
