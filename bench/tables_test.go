package bench

import (
	"fmt"
	"sort"
	"strings"
)

// markdown is the short report a run writes next to its JSON.
func (r *results) markdown() string {
	var sb strings.Builder
	m := r.Machine
	commit := m.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if m.Dirty {
		commit += " (uncommitted changes)"
	}
	fmt.Fprintf(&sb, "Machine: %s, %d cores, %s %s; %s; commit %s.\n", m.CPU, m.Cores, m.GoVersion, m.OS, m.Date, commit)
	names := make([]string, 0, len(r.Load))
	for name := range r.Load {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&sb, "Load average (1/5/15 min) around %s: %s before, %s after.\n", name, r.Load[name][0], r.Load[name][1])
	}
	if len(r.Steady) > 0 {
		sb.WriteString(otherLoad(r.Steady))
		sb.WriteString("\n" + steadyTable(r.Steady))
	}
	if len(r.Handler) > 0 {
		sb.WriteString("\n" + handlerTable(r.Handler))
	}
	if r.Storm != nil {
		sb.WriteString("\n" + stormTable(r.Storm))
	}
	return sb.String()
}

// otherLoad says how much CPU the rest of the machine used while the
// steady state measured: the honest measure of how quiet the machine was
// (the load average counts this run's own processes).
func otherLoad(rows []steadyRow) string {
	var sum, peak float64
	var worst string
	for _, r := range rows {
		sum += r.OtherCPUCores
		if r.OtherCPUCores > peak {
			peak, worst = r.OtherCPUCores, fmt.Sprintf("%s at %d clients", r.Target, r.Clients)
		}
	}
	return fmt.Sprintf("CPU used by other processes during the measured phases: %.2f cores on average, at most %.2f (%s).\n",
		sum/float64(len(rows)), peak, worst)
}

// steadyTable is the steady state as a markdown table.
func steadyTable(rows []steadyRow) string {
	var sb strings.Builder
	sb.WriteString("| target | clients | req/s | × bare | p50 µs | p99 µs | p99.9 µs | +p50 µs vs bare | proxy CPU s/10k | Redis CPU s/10k | upstream CPU s/10k | proxy allocs/req (+ vs bare) |\n")
	sb.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		ratio, added := fmt.Sprintf("%.2f", r.RatioToBare), fmt.Sprintf("%+.0f", r.AddedP50us)
		if r.Target == tBare {
			ratio, added = "1", "0"
		}
		allocs := opt(r.ProxyAllocsPerReq, "%.0f")
		if r.ProxyAllocsPerReq != nil && r.Target != tBare {
			allocs += fmt.Sprintf(" (%+.0f)", r.AddedAllocsPerReq)
		}
		fmt.Fprintf(&sb, "| %s | %d | %.0f | %s | %.0f | %.0f | %.0f | %s | %s | %s | %.2f | %s |\n",
			r.Target, r.Clients, r.ReqPerSec, ratio, r.P50us, r.P99us, r.P999us, added,
			opt(r.ProxyCPUPer10k, "%.2f"), opt(r.RedisCPUPer10k, "%.2f"), r.UpstreamCPUPer10k, allocs)
	}
	return sb.String()
}

func opt(v *float64, format string) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf(format, *v)
}

// handlerTable is the in-process handler benchmark as a markdown table.
func handlerTable(rows []handlerResult) string {
	var sb strings.Builder
	sb.WriteString("In-process handler (ServeHTTP called directly, upstream answered from memory):\n\n")
	sb.WriteString("| handler | ns/op | allocs/op | B/op | + allocs vs bare | + B vs bare |\n|---|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %.0f | %d | %d | %+d | %+d |\n", r.Name, r.NsPerOp, r.AllocsPerOp, r.BytesPerOp, r.AddedAllocsOverRP, r.AddedBytesOverRP)
	}
	return sb.String()
}

// stormTable is the refresh storm as a markdown table.
func stormTable(s *stormResult) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Refresh storm: %d sessions × %d concurrent requests right after expiry, %d rounds; token endpoint: one RS256 signature + %.0f ms per call; other processes used %.2f cores meanwhile:\n\n",
		s.Sessions, s.RequestsPerSession, s.Rounds, s.TokenLatencyMs, s.OtherCPUCores)
	sb.WriteString("| | requests/round | token calls/round | reused | non-2xx | p50 ms | p99 ms | max ms | p99 ms per round | + p50 ms vs floor | + p99 ms vs floor | + p99 ms vs fresh tokens |\n")
	sb.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, k := range s.Kinds {
		calls := make([]string, len(k.TokenCalls))
		for i, c := range k.TokenCalls {
			calls[i] = fmt.Sprint(c)
		}
		rounds := make([]string, len(k.RoundP99ms))
		for i, p := range k.RoundP99ms {
			rounds[i] = fmt.Sprintf("%.0f", p)
		}
		added50, added99 := fmt.Sprintf("%+.0f", k.AddedP50ms), fmt.Sprintf("%+.0f", k.AddedP99ms)
		if k.Name == kFloor {
			added50, added99 = "–", "–"
		}
		overFresh := "–"
		if k.Name == k1 || k.Name == k2 {
			overFresh = fmt.Sprintf("%+.0f", k.AddedP99msOverFresh)
		}
		fmt.Fprintf(&sb, "| %s | %d | %s | %d | %d | %.0f | %.0f | %.0f | %s | %s | %s | %s |\n",
			k.Name, k.Requests, strings.Join(calls, ", "), k.Reused, k.Non2xx, k.P50ms, k.P99ms, k.MaxMs,
			strings.Join(rounds, ", "), added50, added99, overFresh)
	}
	return sb.String()
}
