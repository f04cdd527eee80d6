package histories

import "testing"

func TestProbeSegs(t *testing.T) {
	for _, keys := range []int{10, 1000} {
		ks := partition(benchHistory(keys))
		segs, maxSeg := 0, 0
		for _, kh := range ks {
			segs += len(kh.segs)
			for _, s := range kh.segs {
				maxSeg = max(maxSeg, s.hi-s.lo)
			}
		}
		t.Logf("keys %d segs %d maxSeg %d", keys, segs, maxSeg)
	}
}
