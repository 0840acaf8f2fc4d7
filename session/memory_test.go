package session

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// The Backend contract is tested by session/storetest (memory_conformance_test.go); these tests
// cover what is particular to MemoryStore.

func TestMemoryStoreExpiresOnInjectedClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := NewMemoryStore(time.Now)
		if err := s.Create(ctx, "k", []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.TryLock(ctx, "l", "me", time.Minute); !ok || err != nil {
			t.Fatalf("TryLock = %v, %v", ok, err)
		}
		time.Sleep(time.Minute - time.Nanosecond)
		e, err := s.Get(ctx, "k")
		if err != nil || e.TTL != time.Nanosecond {
			t.Fatalf("Get just before expiry = %+v, %v; want TTL 1ns", e, err)
		}
		if ok, _ := s.TryLock(ctx, "l", "other", time.Minute); ok {
			t.Fatalf("TryLock took a live lock")
		}
		time.Sleep(time.Nanosecond)
		if _, err := s.Get(ctx, "k"); err != ErrNotFound {
			t.Fatalf("Get at expiry = %v, want ErrNotFound", err)
		}
		if ok, _ := s.TryLock(ctx, "l", "other", time.Minute); !ok {
			t.Fatalf("TryLock could not take an expired lock")
		}
	})
}

func TestMemoryStoreSweepBoundsMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := NewMemoryStore(time.Now)
		const live = 10
		for i := range live {
			if err := s.Create(ctx, fmt.Sprintf("live-%d", i), []byte("v"), 24*time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		// 10,000 short-lived sessions, claims, locks and indexes, each read or used
		// never again: without a sweep they would all stay.
		for i := range 10000 {
			k := fmt.Sprintf("%d", i)
			if err := s.Create(ctx, "s-"+k, []byte("v"), time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Claim(ctx, "us-"+k, time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := s.TryLock(ctx, "l-"+k, "o", time.Second); err != nil {
				t.Fatal(err)
			}
			if err := s.AddToIndex(ctx, "ix-"+k, "m", time.Second); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Second)
		}
		// Between sweeps at most max(sweepMin, items at last sweep) writes
		// accumulate, each adding at most one item.
		if got, limit := s.Len(), live+4+2*sweepMin; got > limit {
			t.Errorf("Len() = %d after 40,000 expired writes, want <= %d", got, limit)
		}
		for i := range live {
			if _, err := s.Get(ctx, fmt.Sprintf("live-%d", i)); err != nil {
				t.Errorf("live entry %d lost: %v", i, err)
			}
		}
	})
}

func TestMemoryStoreCopiesData(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore(nil)
	data := []byte("abc")
	if err := s.Create(ctx, "k", data, time.Minute); err != nil {
		t.Fatal(err)
	}
	data[0] = 'X'
	e, _ := s.Get(ctx, "k")
	e.Data[1] = 'Y'
	again, _ := s.Get(ctx, "k")
	if got := string(again.Data); got != "abc" {
		t.Errorf("stored data = %q, want %q: the store shares callers' slices", got, "abc")
	}
}
