// Package groupcommit is the queue behind the shared raft stores' group
// commit (relaylog/walstore and relaylog/sharedlog): writers from every
// shard enqueue requests and wait, and one committer takes everything
// queued (up to a byte budget) as one batch, writes it with one fsync and
// answers it; requests that arrive meanwhile form the next batch. There is
// no timer: batches grow with load.
package groupcommit

import "sync"

// Queue holds requests waiting for the committer. The zero value is not
// usable; call New.
type Queue[T any] struct {
	size     func(T) int
	maxBatch int

	mu     sync.Mutex
	cond   sync.Cond // signalled when the queue grows or closes
	queue  []T
	closed bool
}

// New returns a queue whose batches weigh at most maxBatch by size (a
// batch always takes at least one request).
func New[T any](maxBatch int, size func(T) int) *Queue[T] {
	q := &Queue[T]{size: size, maxBatch: maxBatch}
	q.cond.L = &q.mu
	return q
}

// Put enqueues r; false if the queue is closed.
func (q *Queue[T]) Put(r T) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.queue = append(q.queue, r)
	if len(q.queue) == 1 {
		q.cond.Signal()
	}
	return true
}

// Next waits for requests and moves the next batch into batch[:0]; it
// returns the batch, its total size, and false once the queue is closed.
func (q *Queue[T]) Next(batch []T) ([]T, int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.queue) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return batch[:0], 0, false
	}
	n, size := 0, 0
	for n < len(q.queue) {
		s := q.size(q.queue[n])
		if n > 0 && size+s > q.maxBatch {
			break
		}
		size += s
		n++
	}
	batch = append(batch[:0], q.queue[:n]...)
	rest := copy(q.queue, q.queue[n:])
	clear(q.queue[rest:])
	q.queue = q.queue[:rest]
	return batch, size, true
}

// Close closes the queue and returns what was still queued, for the caller
// to fail; already false if it was closed before.
func (q *Queue[T]) Close() (queued []T, already bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, true
	}
	q.closed = true
	queued, q.queue = q.queue, nil
	q.cond.Broadcast()
	return queued, false
}

// Len is the number of requests waiting (tests watch batches form).
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}
