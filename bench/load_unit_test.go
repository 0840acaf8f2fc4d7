package bench

import (
	"testing"
	"time"
)

// TestPercentile pins the nearest-rank definition every reported latency
// uses: the p-quantile of n sorted values is the ceil(p·n)-th.
func TestPercentile(t *testing.T) {
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i))
	}
	for _, tt := range []struct {
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{hundred, 0.50, 50},
		{hundred, 0.99, 99},
		{hundred, 0.999, 100},
		{hundred, 1, 100},
		{hundred[:10], 0.99, 10},
		{hundred[:1], 0.5, 1},
		{nil, 0.5, 0},
	} {
		if got := percentile(tt.values, tt.p); got != tt.want {
			t.Errorf("percentile(%d values, %v) = %d, want %d", len(tt.values), tt.p, got, tt.want)
		}
	}
}
