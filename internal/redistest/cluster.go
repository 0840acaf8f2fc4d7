package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// clusterCreateTimeout bounds redis-cli --cluster create, which waits for
// the nodes to agree on the configuration.
const clusterCreateTimeout = 60 * time.Second

// Cluster is a Redis Cluster of three masters and no replicas, every slot
// assigned.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts three cluster-enabled redis-servers, joins them with
// redis-cli --cluster create, and waits until every node reports
// cluster_state:ok. Everything is stopped when the test ends.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	cli := binary(tb, "redis-cli")
	c := &Cluster{}
	for range 3 {
		c.Nodes = append(c.Nodes, Start(tb, Options{Args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000",
		}}))
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	for _, n := range c.Nodes {
		client := n.Client(tb)
		err := waitFor(ctx, clusterCreateTimeout, func(ctx context.Context) error {
			info, err := client.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			for _, want := range []string{"cluster_state:ok", "cluster_slots_ok:16384", "cluster_known_nodes:3"} {
				if !strings.Contains(info, want) {
					return fmt.Errorf("node %s: CLUSTER INFO lacks %s", n.Addr, want)
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("redistest: cluster not ready: %v", err)
		}
	}
	return c
}

// Addrs returns the node addresses, as a cluster client wants them.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}
