package kv

import "hash/fnv"

// ShardOf maps a key to one of n shards: FNV-1a of the key modulo n. The
// chain store's chains and the raft store's groups both use it, so that a
// comparison of C chains against C raft groups splits the same keys the
// same way and neither store is handed an easier spread of hot keys.
func ShardOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}
