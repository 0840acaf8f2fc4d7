package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// meter reads one process's counters: CPU time from /proc, and, when the
// process reports them, the heap objects it has allocated.
type meter struct {
	name    string
	pid     int
	cpu     func() (time.Duration, error) // nil: cpuTime(pid)
	mallocs func() (uint64, error)        // nil: not read
	// scrape is how many objects one mallocs call allocates in the
	// process itself (a /metrics scrape is not free); it is subtracted
	// from every delta.
	scrape uint64
}

// reading is a meter's counters at one moment.
type reading struct {
	cpu     time.Duration
	mallocs uint64
}

func (m *meter) read(b *testing.B) reading {
	b.Helper()
	var r reading
	if m.mallocs != nil {
		n, err := m.mallocs()
		if err != nil {
			b.Fatalf("%s: allocations: %v", m.name, err)
		}
		r.mallocs = n
	}
	read := m.cpu
	if read == nil {
		read = func() (time.Duration, error) { return cpuTime(m.pid) }
	}
	cpu, err := read()
	if err != nil {
		b.Fatalf("%s: cpu time: %v", m.name, err)
	}
	r.cpu = cpu
	return r
}

// since is what the process used between r0 and r1: CPU time and objects
// allocated (less the cost of one read).
func (m *meter) since(r0, r1 reading) (time.Duration, uint64) {
	allocs := r1.mallocs - r0.mallocs
	if allocs >= m.scrape {
		allocs -= m.scrape
	}
	return r1.cpu - r0.cpu, allocs
}

// roleMeter meters a helper role; its statistics listener reports
// mallocs.
func roleMeter(b *testing.B, r *role) *meter {
	m := &meter{name: r.name, pid: r.Pid(), mallocs: func() (uint64, error) {
		var st map[string]int64
		if err := getJSON(r.stats, &st); err != nil {
			return 0, err
		}
		return uint64(st["mallocs"]), nil
	}}
	m.scrape = readCost(b, m.mallocs)
	return m
}

// relayMeter meters a tokenrelay process through its /metrics.
func relayMeter(b *testing.B, r *relay) *meter {
	m := &meter{name: r.name, pid: r.Pid(), mallocs: r.Mallocs}
	m.scrape = readCost(b, m.mallocs)
	return m
}

// readCost is how many objects one call of read allocates in the process
// it reads: the median difference between back-to-back reads.
func readCost(b *testing.B, read func() (uint64, error)) uint64 {
	b.Helper()
	var diffs []uint64
	prev, err := read()
	for range 5 {
		if err != nil {
			b.Fatal(err)
		}
		var n uint64
		n, err = read()
		diffs = append(diffs, n-prev)
		prev = n
	}
	if err != nil {
		b.Fatal(err)
	}
	sortUint64(diffs)
	return diffs[len(diffs)/2]
}

// redisMeter meters redis-server. Its CPU time comes from INFO cpu
// (microseconds), finer than /proc's 10 ms ticks, which matters for a
// process this little loaded.
func redisMeter(rdb *redis.Client) *meter {
	return &meter{name: "redis-server", cpu: func() (time.Duration, error) {
		info, err := rdb.Info(context.Background(), "cpu").Result()
		if err != nil {
			return 0, err
		}
		var total float64
		for _, line := range strings.Split(info, "\r\n") {
			for _, field := range []string{"used_cpu_sys:", "used_cpu_user:"} {
				if v, ok := strings.CutPrefix(line, field); ok {
					f, err := strconv.ParseFloat(v, 64)
					if err != nil {
						return 0, err
					}
					total += f
				}
			}
		}
		return time.Duration(total * float64(time.Second)), nil
	}}
}

// redisInfo reads one field of a section of INFO.
func redisInfo(rdb *redis.Client, section, field string) (int64, error) {
	info, err := rdb.Info(context.Background(), section).Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("redis INFO %s: no %s", section, field)
}
