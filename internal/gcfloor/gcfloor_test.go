package gcfloor

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitGoal collects until the heap goal satisfies ok (the tuner runs in
// a finalizer, after the collection that made it garbage).
func waitGoal(t *testing.T, ok func(goal, gogc uint64) bool) (uint64, uint64) {
	t.Helper()
	var goal, gogc uint64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		goal, gogc = read("/gc/heap/goal:bytes"), read("/gc/gogc:percent")
		if ok(goal, gogc) {
			return goal, gogc
		}
	}
	t.Fatalf("heap goal %d, GOGC %d", goal, gogc)
	return 0, 0
}

// TestFloor: with a small live heap the goal is at least the floor; with
// a live heap past it, GOGC is Percent again.
func TestFloor(t *testing.T) {
	const floor = 96 << 20
	Set(floor, false)
	goal, gogc := waitGoal(t, func(goal, gogc uint64) bool { return goal >= floor*9/10 })
	if goal > floor*11/10 {
		t.Errorf("small heap: goal %d, want about the floor %d", goal, floor)
	}
	if gogc <= Percent {
		t.Errorf("small heap: GOGC %d, want above %d", gogc, Percent)
	}
	t.Logf("small heap: goal %d MiB, GOGC %d", goal>>20, gogc)

	live := make([][]byte, 0, 128)
	for range 128 {
		live = append(live, make([]byte, 1<<20))
	}
	goal, gogc = waitGoal(t, func(goal, gogc uint64) bool { return gogc == Percent })
	t.Logf("128 MiB live: goal %d MiB, GOGC %d", goal>>20, gogc)
	runtime.KeepAlive(live)
}

// TestRaise: a raised floor is the goal while it lasts, and the floor Set
// gave is back after restore.
func TestRaise(t *testing.T) {
	const floor, raised = 96 << 20, 200 << 20
	Set(floor, false) // once per process: TestFloor may have set it
	restore := Raise(raised)
	goal, _ := waitGoal(t, func(goal, gogc uint64) bool { return goal >= raised*9/10 })
	t.Logf("raised: goal %d MiB", goal>>20)
	if goal > raised*11/10 {
		t.Errorf("raised: goal %d, want about %d", goal, raised)
	}
	restore()
	goal, _ = waitGoal(t, func(goal, gogc uint64) bool { return goal <= floor*11/10 })
	t.Logf("restored: goal %d MiB", goal>>20)
}
