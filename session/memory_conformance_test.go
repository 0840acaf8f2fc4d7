package session

import (
	"testing"

	"github.com/tokenrelay/tokenrelay/session/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) Backend { return NewMemoryStore(nil) }, storetest.FakeTime())
}
