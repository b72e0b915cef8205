package cluster

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/edgenode/edgenode/wire/nodewire"
)

// Acks for one node that come while a call to it is in progress wait and
// go together in the next call; each gets its own answer. A call that
// fails answers each of its acks batch_failed (they then go one by one).
func TestAckBatcherSendsWaitingAcksTogether(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var batches [][]nodewire.DeviceAck
	tr := &fakeTransport{answer: func(_ context.Context, node string, _ int, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
		mu.Lock()
		batches = append(batches, req.Acks)
		first := len(batches) == 1
		mu.Unlock()
		if node == "n3" {
			return nil, errRemote
		}
		if first {
			<-release // the first call is slow
		}
		codes := make([]string, len(req.Acks))
		for i, a := range req.Acks {
			if a.Device == "revoked" {
				codes[i] = nodewire.NodeErrRevoked
			}
		}
		return &nodewire.CallResponse{Codes: codes}, nil
	}}
	b := newAckBatcher(newTestRouting(newFakeShards(4), threeNodes(), tr))
	ctx := context.Background()
	type answer struct {
		user int64
		code string
	}
	answers := make(chan answer, 10)
	ack := func(user int64, dev string) {
		go func() {
			answers <- answer{user, b.ack(ctx, "n2", 1, nodewire.DeviceAck{User: user, Device: dev, UpTo: 10 * user})}
		}()
	}
	ack(1, "phone")
	eventually(t, "the first call", func() bool { mu.Lock(); defer mu.Unlock(); return len(batches) == 1 })
	ack(2, "phone")
	ack(3, "revoked")
	ack(4, "tablet")
	eventually(t, "three acks waiting", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.peers["n2"] != nil && len(b.peers["n2"].waiting) == 3
	})
	close(release)
	want := map[int64]string{1: "", 2: "", 3: nodewire.NodeErrRevoked, 4: ""}
	for range want {
		a := <-answers
		if a.code != want[a.user] {
			t.Fatalf("user %d's ack answered %q, want %q", a.user, a.code, want[a.user])
		}
	}
	mu.Lock()
	if len(batches) != 2 || len(batches[0]) != 1 || len(batches[1]) != 3 || !slices.Contains(batches[1], nodewire.DeviceAck{User: 4, Device: "tablet", UpTo: 40}) {
		t.Fatalf("calls %v, want the first ack alone and the next three together", batches)
	}
	mu.Unlock()

	if code := b.ack(ctx, "n3", 2, nodewire.DeviceAck{User: 5, UpTo: 1}); code != errBatchFailed {
		t.Fatalf("ack to an unreachable node answered %q", code)
	}
	eventually(t, "no peer kept with nothing waiting", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.peers) == 0
	})
}

// The leader applies a device's acks one at a time: acks that come while
// one is being applied fold into one more application, at the highest
// cursor; another device's ack does not wait; nothing is held once all
// are applied.
func TestAckApplierFoldsADevicesAcks(t *testing.T) {
	var q ackApplier
	var mu sync.Mutex
	applied := map[string][]int64{}
	started, release := make(chan struct{}, 8), make(chan struct{})
	apply := func(a nodewire.DeviceAck) {
		mu.Lock()
		applied[a.Device] = append(applied[a.Device], a.UpTo)
		mu.Unlock()
		started <- struct{}{}
		if a.Device == "phone" {
			<-release
		}
	}
	q.add(nodewire.DeviceAck{User: 1, Device: "phone", UpTo: 1}, apply)
	<-started // the phone's first ack is being applied
	for _, up := range []int64{2, 5, 3} {
		q.add(nodewire.DeviceAck{User: 1, Device: "phone", UpTo: up}, apply)
	}
	q.add(nodewire.DeviceAck{User: 1, Device: "tablet", UpTo: 4}, apply)
	<-started // the tablet's, while the phone's is still in progress
	release <- struct{}{}
	<-started
	release <- struct{}{}
	for {
		q.mu.Lock()
		n := len(q.pending)
		q.mu.Unlock()
		if n == 0 {
			break
		}
		runtime.Gosched()
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(applied["phone"], []int64{1, 5}) || !slices.Equal(applied["tablet"], []int64{4}) {
		t.Fatalf("applied %v, want phone [1 5] and tablet [4]", applied)
	}
}
