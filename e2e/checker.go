// Package e2e holds end-to-end tests of the real edgenode binary: clusters of
// separate processes on loopback (process_test.go) and of containers on a
// private Docker network (docker_test.go), with faults injected while a load
// driver sends messages like mobile clients do.
//
// The package's non-test files are the tools those tests share: a Checker
// that records every send answered 201 and verifies, by draining the
// recipients' queues, that the cluster kept its promises (nothing
// acknowledged is lost, nothing is stored twice, per-sender order holds;
// with Devices, on every device of every recipient, and every sender's
// own sends on every device of the sender);
// and a Load driver that keeps senders posting through rotating nodes,
// retrying with the same requestId, and measures how long after each fault
// sends to the affected shards resume.
//
// It talks to nodes only the way a client or an operator does: HTTP on the
// client API and the edgenode binary's own subcommands. Nothing here imports
// the server's packages, so a change of internals cannot make these tests
// agree with a bug.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/bits"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Sent is one send answered 201.
type Sent struct {
	Sender, RequestID, MessageID, Recipient int64
	Content                                 string
	At                                      time.Time // when the 201 arrived
}

// Message is the part of the API's Message model the checker reads.
type Message struct {
	MessageID  int64  `json:"messageId"`
	FromUserID int64  `json:"fromUserId"`
	ToUserID   int64  `json:"toUserId"`
	Content    string `json:"content"`
	Status     string `json:"status"`
}

type syncResponse struct {
	Messages          []Message `json:"messages"`
	SentMessages      []Message `json:"sentMessages"`
	LastSyncedMessage int64     `json:"lastSyncedMessage"`
	HasMore           bool      `json:"hasMore"`
}

// ShardOf is the shard of a user's queue as the API documents it: FNV-1a of
// the decimal user id, modulo the shard count. The checker cross-checks it
// against the shard bits of every message id it is given.
func ShardOf(user int64, shards int) int {
	h := fnv.New32a()
	h.Write([]byte(strconv.FormatInt(user, 10)))
	return int(h.Sum32() % uint32(shards))
}

// idShard is the shard encoded in the low bits of a message id (the id
// layout of docs/API.md: milliseconds, then sequence, then shard bits).
func idShard(id int64, shards int) int {
	if shards <= 1 {
		return 0
	}
	b := uint(bits.Len(uint(shards - 1)))
	return int(id & (1<<b - 1))
}

// Token signs an HS256 client token for user, as the operator's login
// service would.
func Token(secret string, user int64) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": strconv.FormatInt(user, 10),
		"exp": time.Now().Add(24 * time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		panic(err)
	}
	return s
}

// Content is the unique content of a sender's request; the checker parses
// it back to tell which send a stored message came from.
func Content(sender, requestID int64) string {
	return fmt.Sprintf("e2e s%d r%d", sender, requestID)
}

func parseContent(c string) (sender, requestID int64, ok bool) {
	_, err := fmt.Sscanf(c, "e2e s%d r%d", &sender, &requestID)
	return sender, requestID, err == nil
}

type sendKey struct{ sender, requestID int64 }

// view is what one device of a user took of the user's queue.
type view struct {
	user   int64
	device string
}

// viewState is a device's cursor and what it received.
type viewState struct {
	cursor   int64
	received map[int64]bool  // message ids (new_message)
	sent     map[int64]bool  // message ids of the user's own sends (sentMessages)
	lastFrom map[int64]int64 // per sender: the newest requestId received
}

// Checker records what the cluster acknowledged and what recipients
// received, and reports every broken promise. It is safe for concurrent
// use.
type Checker struct {
	JWTSecret string
	Shards    int
	Client    *http.Client
	// Devices, when set, are the device ids (Device-Id) every recipient
	// and sender reads its queue with: each must get every message
	// (and each sender every message it sent) exactly once, in order.
	// Link them before the first send. Empty: one default device.
	Devices []string

	mu        sync.Mutex
	sent      map[sendKey]Sent // every 201, by (sender, requestId)
	sentOrder []Sent
	received  map[int64]Message // every message id ever drained
	byContent map[string]int64  // content -> the id it was received under
	views     map[view]*viewState
	linked    map[int64]bool // users whose Devices Link linked
	problems  []string
	unsent    int // received messages whose 201 was never seen
}

// NewChecker returns a checker for a cluster of shards shards whose tokens
// are signed with jwtSecret.
func NewChecker(jwtSecret string, shards int) *Checker {
	return &Checker{
		JWTSecret: jwtSecret, Shards: shards,
		Client:    &http.Client{Timeout: 5 * time.Second},
		sent:      map[sendKey]Sent{},
		received:  map[int64]Message{},
		byContent: map[string]int64{},
		views:     map[view]*viewState{},
		linked:    map[int64]bool{},
	}
}

func (c *Checker) devices() []string {
	if len(c.Devices) == 0 {
		return []string{""}
	}
	return c.Devices
}

func (c *Checker) viewLocked(user int64, dev string) *viewState {
	k := view{user, dev}
	v := c.views[k]
	if v == nil {
		v = &viewState{received: map[int64]bool{}, sent: map[int64]bool{}, lastFrom: map[int64]int64{}}
		c.views[k] = v
	}
	return v
}

// Link has every device of Devices sync each of users' queues once, from
// its start, through any of urls: the server links a device at its first
// call, and a device linked after messages were taken by another gets
// only what follows. Call it before the first send.
func (c *Checker) Link(ctx context.Context, urls []string, users []int64) error {
	for _, u := range users {
		tok := Token(c.JWTSecret, u)
		for _, dev := range c.devices() {
			var err error
			for attempt := 0; attempt < 100; attempt++ {
				if _, err = c.fetch(ctx, urls[attempt%len(urls)], tok, dev, 0); err == nil {
					break
				}
				pause(ctx, 100*time.Millisecond)
			}
			if err != nil {
				return fmt.Errorf("linking device %q of user %d: %w", dev, u, err)
			}
		}
		c.mu.Lock()
		c.linked[u] = true
		c.mu.Unlock()
	}
	return nil
}

func (c *Checker) problem(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// Record notes a send answered 201.
func (c *Checker) Record(s Sent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := sendKey{s.Sender, s.RequestID}
	if prev, ok := c.sent[k]; ok {
		if prev.MessageID != s.MessageID {
			c.problem("idempotency broken: sender %d requestId %d answered 201 with id %d and later with id %d", s.Sender, s.RequestID, prev.MessageID, s.MessageID)
		}
		return
	}
	if c.Shards > 0 {
		if got, want := idShard(s.MessageID, c.Shards), ShardOf(s.Recipient, c.Shards); got != want {
			c.problem("message %d to user %d carries shard %d in its id, but the user's shard is %d", s.MessageID, s.Recipient, got, want)
		}
	}
	c.sent[k] = s
	c.sentOrder = append(c.sentOrder, s)
}

// Acked is how many distinct sends were answered 201.
func (c *Checker) Acked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sent)
}

// Drain empties every recipient's queue through GET /v1/messages on any of
// urls (rotating past nodes that fail), acknowledging what it receives, and
// then checks every send answered 201 before the drain began. It returns
// the problems found so far (all of them, not only this drain's).
//
// With Devices, every device of every recipient drains, and so does every
// device of every sender (its own sends come as sentMessages).
func (c *Checker) Drain(ctx context.Context, urls []string, recipients []int64) []string {
	c.mu.Lock()
	snapshot := append([]Sent(nil), c.sentOrder...)
	c.mu.Unlock()

	users := append([]int64(nil), recipients...)
	if len(c.Devices) > 0 {
		c.mu.Lock()
		for u := range c.linked {
			if !slices.Contains(recipients, u) {
				users = append(users, u)
			}
		}
		c.mu.Unlock()
	}
	for _, u := range users {
		for _, dev := range c.devices() {
			if err := c.drainUser(ctx, urls, u, dev); err != nil {
				c.mu.Lock()
				c.problem("draining user %d device %q: %v", u, dev, err)
				c.mu.Unlock()
			}
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	var lost []string
	for _, s := range snapshot {
		m, ok := c.received[s.MessageID]
		switch {
		case !ok:
			lost = append(lost, fmt.Sprintf("%d (sender %d requestId %d to %d, 201 at %s)", s.MessageID, s.Sender, s.RequestID, s.Recipient, s.At.Format("15:04:05.000")))
			continue
		case m.Content != s.Content || m.ToUserID != s.Recipient || m.FromUserID != s.Sender:
			c.problem("message %d received as from %d to %d %q, but was sent from %d to %d %q", s.MessageID, m.FromUserID, m.ToUserID, m.Content, s.Sender, s.Recipient, s.Content)
		}
		if len(c.Devices) == 0 {
			continue
		}
		for _, dev := range c.Devices {
			if !c.viewLocked(s.Recipient, dev).received[s.MessageID] {
				lost = append(lost, fmt.Sprintf("%d on device %q of recipient %d", s.MessageID, dev, s.Recipient))
			}
			if c.linked[s.Sender] && !c.viewLocked(s.Sender, dev).sent[s.MessageID] {
				lost = append(lost, fmt.Sprintf("%d as sent, on device %q of sender %d", s.MessageID, dev, s.Sender))
			}
		}
	}
	if len(lost) > 0 {
		const show = 20
		more := ""
		if len(lost) > show {
			more = fmt.Sprintf(" and %d more", len(lost)-show)
			lost = lost[:show]
		}
		c.problem("LOST: %d deliveries of the %d messages answered 201 (to each device of their recipient, and as sent to each device of their sender) never happened: %s%s", len(lost), len(snapshot), strings.Join(lost, ", "), more)
	}
	c.checkOrderLocked()
	return append([]string(nil), c.problems...)
}

// checkOrderLocked: for each sender and recipient, the ids of the 201s grow
// with the requestIds.
func (c *Checker) checkOrderLocked() {
	type pair struct{ from, to int64 }
	byPair := map[pair][]Sent{}
	for _, s := range c.sentOrder {
		p := pair{s.Sender, s.Recipient}
		byPair[p] = append(byPair[p], s)
	}
	for p, ss := range byPair {
		sort.Slice(ss, func(i, j int) bool { return ss[i].RequestID < ss[j].RequestID })
		for i := 1; i < len(ss); i++ {
			if ss[i].MessageID <= ss[i-1].MessageID {
				msg := fmt.Sprintf("ORDER: sender %d to %d: requestId %d got id %d, but the earlier requestId %d got id %d", p.from, p.to, ss[i].RequestID, ss[i].MessageID, ss[i-1].RequestID, ss[i-1].MessageID)
				if !contains(c.problems, msg) {
					c.problems = append(c.problems, msg)
				}
			}
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// drainUser reads one user's queue to its end, as device dev.
func (c *Checker) drainUser(ctx context.Context, urls []string, user int64, dev string) error {
	tok := Token(c.JWTSecret, user)
	var lastErr error
	failures := 0
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
		}
		c.mu.Lock()
		cursor := c.viewLocked(user, dev).cursor
		c.mu.Unlock()
		base := urls[attempt%len(urls)]
		sr, err := c.fetch(ctx, base, tok, dev, cursor)
		if err != nil {
			lastErr = fmt.Errorf("%s: %w", base, err)
			failures++
			if failures > 200 {
				return lastErr
			}
			pause(ctx, 50*time.Millisecond)
			continue
		}
		failures = 0
		c.mu.Lock()
		c.acceptLocked(user, dev, cursor, sr)
		c.mu.Unlock()
		if !sr.HasMore {
			return nil
		}
	}
}

func (c *Checker) fetch(ctx context.Context, base, tok, dev string, cursor int64) (*syncResponse, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v1/messages?lastSyncedMessage=%d&limit=500", base, cursor), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if dev != "" {
		req.Header.Set("Device-Id", dev)
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	var sr syncResponse
	if err := json.Unmarshal(body, &sr); err != nil {
		return nil, fmt.Errorf("decoding %q: %w", body, err)
	}
	return &sr, nil
}

// acceptLocked checks one sync answer for device dev of user, asked with
// cursor.
func (c *Checker) acceptLocked(user int64, dev string, cursor int64, sr *syncResponse) {
	v := c.viewLocked(user, dev)
	for _, m := range sr.SentMessages {
		if m.FromUserID != user {
			c.problem("user %d's queue holds a sent message %d from %d", user, m.MessageID, m.FromUserID)
			continue
		}
		if v.sent[m.MessageID] {
			// A send retried after its copy was queued is copied again
			// (docs/API.md): a duplicate only when its 201 came once.
			continue
		}
		v.sent[m.MessageID] = true
	}
	for _, m := range sr.Messages {
		if m.MessageID <= cursor {
			c.problem("DUPLICATE: user %d device %q synced past %d, yet message %d (%q) was returned again", user, dev, cursor, m.MessageID, m.Content)
			continue
		}
		if m.ToUserID != user {
			c.problem("user %d's queue holds message %d addressed to %d", user, m.MessageID, m.ToUserID)
		}
		if v.received[m.MessageID] {
			c.problem("DUPLICATE: message id %d received twice on device %q of user %d", m.MessageID, dev, user)
			continue
		}
		v.received[m.MessageID] = true
		if prev, ok := c.received[m.MessageID]; ok {
			if prev.Content != m.Content {
				c.problem("message id %d received as %q and as %q", m.MessageID, prev.Content, m.Content)
			}
			c.orderInViewLocked(user, dev, v, m)
			continue
		}
		if other, ok := c.byContent[m.Content]; ok && other != m.MessageID {
			c.problem("DUPLICATE: content %q stored under two ids, %d and %d", m.Content, other, m.MessageID)
		}
		c.received[m.MessageID] = m
		c.byContent[m.Content] = m.MessageID
		from, req, ok := parseContent(m.Content)
		if !ok || from != m.FromUserID {
			c.problem("message %d has content %q from %d that no sender here wrote", m.MessageID, m.Content, m.FromUserID)
			continue
		}
		if s, ok := c.sent[sendKey{from, req}]; !ok {
			c.unsent++ // a send whose 201 never arrived (abandoned or in flight)
		} else if s.MessageID != m.MessageID {
			c.problem("DUPLICATE: sender %d requestId %d was answered 201 with id %d, but the recipient got it as id %d", from, req, s.MessageID, m.MessageID)
		}
		c.orderInViewLocked(user, dev, v, m)
	}
	if sr.LastSyncedMessage < cursor {
		c.problem("user %d device %q: sync past %d answered lastSyncedMessage %d (went backwards)", user, dev, cursor, sr.LastSyncedMessage)
		return
	}
	v.cursor = sr.LastSyncedMessage
}

// orderInViewLocked: per sender, a device receives the sender's messages
// oldest first.
func (c *Checker) orderInViewLocked(user int64, dev string, v *viewState, m Message) {
	from, req, ok := parseContent(m.Content)
	if !ok {
		return
	}
	if last, ok := v.lastFrom[from]; ok && req < last {
		c.problem("ORDER: user %d device %q received sender %d's requestId %d after requestId %d", user, dev, from, req, last)
	}
	if req > v.lastFrom[from] {
		v.lastFrom[from] = req
	}
}

// Summary describes what the checker saw.
func (c *Checker) Summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	devs := ""
	if len(c.Devices) > 0 {
		devs = fmt.Sprintf(" on each of %d devices", len(c.Devices))
	}
	return fmt.Sprintf("%d sends answered 201, %d messages received%s (%d without a 201 seen), %d problems", len(c.sent), len(c.received), devs, c.unsent, len(c.problems))
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
