package kv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
)

// Digest is a SHA-256 over a store's data: keys in order, each key and
// value length-prefixed ("<len>:<key><len>:<value>"). Every store hashes
// its replicas this way for the end-of-run comparison, so the same data
// has the same digest whichever store holds it.
func Digest(data map[string]string) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(data[k]), data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}
