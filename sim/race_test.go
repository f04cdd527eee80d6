//go:build race

package sim

// raceEnabled: the race detector slows the simulation several times over;
// the seed counts shrink so that `make test` (go test -race ./...) takes no
// longer than before. One world runs on one goroutine, so what the race
// detector can find here it finds in a few seeds.
const raceEnabled = true
