package posture

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// blockingBackend holds every commit until release is closed.
type blockingBackend struct {
	entered chan struct{} // receives when a commit starts
	release chan struct{}
	done    atomic.Bool // a commit returned
	early   atomic.Bool // Close was called while a commit was held
}

func (b *blockingBackend) Commit(ctx context.Context, ops []Op) (uint64, error) {
	b.entered <- struct{}{}
	<-b.release
	b.done.Store(true)
	return 7, nil
}

func (b *blockingBackend) Close() error {
	if !b.done.Load() {
		b.early.Store(true)
	}
	return nil
}

// TestInstallDuringCommit: while a group is in flight to the backend, the
// copy keeps installing what the change stream brings (holding the store
// across the round trip made every writer wait for the next group's round
// trip too), and Close waits for the group.
func TestInstallDuringCommit(t *testing.T) {
	be := &blockingBackend{entered: make(chan struct{}, 1), release: make(chan struct{})}
	db := NewShared(be, Options{})
	applied := make(chan error, 1)
	go func() {
		_, err := db.ApplyPosture(context.Background(), []PostureEvent{{Key: DeviceKey{CA: "ca", ID: "d1"},
			Posture: Posture{Source: "uem", EventID: "e1", Managed: true, ObservedAt: t0}}})
		applied <- err
	}()
	<-be.entered
	installed := make(chan struct{})
	go func() {
		db.Install([]Record{loadRecord(t, "ca", "d2", "uem", "ios", 6)}, 6)
		close(installed)
	}()
	select {
	case <-installed:
	case <-time.After(10 * time.Second):
		t.Fatal("Install waited for a commit in flight")
	}
	if db.Device(DeviceKey{CA: "ca", ID: "d2"}) == nil {
		t.Error("the installed record is not in the copy")
	}
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	close(be.release)
	// The writer waits (bounded) for revision 7 to be installed.
	db.Install(nil, 7)
	if err := <-applied; err != nil {
		t.Errorf("ApplyPosture = %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
	if be.early.Load() {
		t.Error("Close closed the backend while a commit was in flight")
	}
}
