package edge

import "time"

// Socket work (a read burst, a writer run, an ack commit) is short and frequent: at a few
// thousand sends per second every socket event would otherwise start a new
// goroutine whose stack then grows (the JSON decoder and select need more
// than the initial 2 KiB), copying it on each growth. Worker
// goroutines that stay around for a while keep their grown stacks; the pool
// has no fixed size: a task starts a new worker when none waits, and a
// worker idle for workerIdle leaves, so an idle node holds none.

type taskKind uint8

const (
	taskRead taskKind = iota
	taskWrite
	taskAck
)

type task struct {
	sk   *socket
	kind taskKind
}

func (t task) run() {
	switch t.kind {
	case taskRead:
		t.sk.readBurst()
	case taskWrite:
		t.sk.writeRun()
	case taskAck:
		t.sk.commitAcks()
	}
}

// idleWorkers is unbuffered: a send succeeds only when a worker waits.
var idleWorkers = make(chan task)

const workerIdle = 2 * time.Second

// runTask runs t on a waiting worker, or on a new one.
func runTask(t task) {
	select {
	case idleWorkers <- t:
	default:
		go worker(t)
	}
}

func worker(t task) {
	var idle *time.Timer
	for {
		t.run()
		t = task{}
		if idle == nil {
			idle = time.NewTimer(workerIdle)
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case t = <-idleWorkers:
		case <-idle.C:
			return
		}
	}
}
