package txscope_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/gdprkit/privacy/txscope"
)

type key struct{}

func TestFromContextWithoutScope(t *testing.T) {
	if s := txscope.FromContext(context.Background()); s != nil {
		t.Fatalf("FromContext(background) = %v, want nil", s)
	}
}

func TestLoadOrStoreCreatesOncePerKey(t *testing.T) {
	ctx, s := txscope.NewContext(context.Background())
	if got := txscope.FromContext(ctx); got != s {
		t.Fatalf("FromContext returned another scope")
	}
	var mu sync.Mutex
	created := 0
	var wg sync.WaitGroup
	results := make([]any, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _, err := s.LoadOrStore(key{}, func() (any, error) {
				mu.Lock()
				created++
				mu.Unlock()
				return new(int), nil
			})
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		}()
	}
	wg.Wait()
	if created != 1 {
		t.Fatalf("create ran %d times, want 1", created)
	}
	for i, v := range results {
		if v != results[0] {
			t.Fatalf("participant %d got another value", i)
		}
	}
	if v, ok := s.Load(key{}); !ok || v != results[0] {
		t.Fatalf("Load = %v, %v", v, ok)
	}
	s.Delete(key{})
	if _, ok := s.Load(key{}); ok {
		t.Fatal("value kept after Delete")
	}
}

func TestLoadOrStoreKeepsNothingOnError(t *testing.T) {
	_, s := txscope.NewContext(context.Background())
	boom := errors.New("boom")
	if _, _, err := s.LoadOrStore(key{}, func() (any, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if _, ok := s.Load(key{}); ok {
		t.Fatal("a failed create was kept")
	}
	v, loaded, err := s.LoadOrStore(key{}, func() (any, error) { return 7, nil })
	if err != nil || loaded || v != 7 {
		t.Fatalf("LoadOrStore after failure = %v, %v, %v", v, loaded, err)
	}
}

func TestCloseRunsOnCloseLastFirstOnce(t *testing.T) {
	_, s := txscope.NewContext(context.Background())
	var order []int
	s.OnClose(func() { order = append(order, 1) })
	s.OnClose(func() { order = append(order, 2) })
	s.Close()
	s.Close()
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Fatalf("close order = %v, want [2 1]", order)
	}
	s.OnClose(func() { order = append(order, 3) })
	if len(order) != 3 || order[2] != 3 {
		t.Fatalf("OnClose after Close did not run at once: %v", order)
	}
}
