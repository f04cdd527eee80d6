//go:build race

package histories

// raceEnabled: the race detector slows the checker several times over;
// the randomized differential tests run fewer histories under it (make
// test), and all of them in a plain `go test ./histories`.
const raceEnabled = true
