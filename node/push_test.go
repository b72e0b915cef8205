package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/node"
	"github.com/edgenode/edgenode/push"
	"github.com/edgenode/edgenode/push/pushtest"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

const (
	pushTopic = "com.example.chat"
	iosToken  = "5b2a0c7e4d9f13a8b6e1c0d2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2"
	gcmToken  = "dGVzdC1mY20tdG9rZW4:APA91bFake-Android-Device"
)

// pushFakes are the fake providers a node's push flags point at.
type pushFakes struct {
	apns  *pushtest.APNS
	fcm   *pushtest.FCM
	flags []string
}

func newPushFakes(t *testing.T, extra ...string) *pushFakes {
	t.Helper()
	f := &pushFakes{apns: pushtest.NewAPNS(), fcm: pushtest.NewFCM()}
	t.Cleanup(f.apns.Close)
	t.Cleanup(f.fcm.Close)
	dir := t.TempDir()
	key, creds, ca := filepath.Join(dir, "AuthKey.p8"), filepath.Join(dir, "service-account.json"), filepath.Join(dir, "ca.pem")
	for _, err := range []error{f.apns.WriteKey(key), f.fcm.WriteCredentials(creds), f.apns.WriteCert(ca)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	f.flags = append([]string{
		"--jwt-secret", jwtSecret,
		"--apns-key-file", key, "--apns-key-id", f.apns.KeyID, "--apns-team-id", f.apns.TeamID,
		"--apns-topic", pushTopic, "--apns-url", f.apns.URL, "--apns-sandbox-url", f.apns.SandboxURL,
		"--fcm-credentials-file", creds, "--fcm-url", f.fcm.URL,
		"--push-ca-file", ca, "--push-debounce", "200ms", "--push-ack-timeout", "1m",
	}, extra...)
	return f
}

func registerDevice(t *testing.T, n *testNode, user int64, platform, token string, sandbox bool) {
	t.Helper()
	if code := postAs(t, n, user, "/v1/devices", map[string]any{"platform": platform, "token": token, "sandbox": sandbox}); code != http.StatusCreated {
		t.Fatalf("register device: %d", code)
	}
}

// postAs POSTs body as JSON to path on n with user's token and returns the
// status.
func postAs(t *testing.T, n *testNode, user int64, path string, body any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	r, _ := http.NewRequest("POST", n.URL()+path, bytes.NewReader(b))
	r.Header.Set("Authorization", "Bearer "+tok(t, user))
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func mustPost(t *testing.T, n *testNode, from, to, req int64, content string) wire.Message {
	t.Helper()
	status, resp := post(t, n, from, to, req, content)
	if status != http.StatusCreated {
		t.Fatalf("send: %d", status)
	}
	return resp.Message
}

// pushCounter reads a push metric of a node.
func pushCounter(t *testing.T, n *node.Node, name, label, value string) float64 {
	mfs, err := n.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func startPushNode(t *testing.T, fakes *pushFakes) *testNode {
	t.Helper()
	n := startNodeWith(t, t.TempDir(), "eu", fakes.flags)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Push == nil {
		t.Fatal("push not started")
	}
	return n
}

// A burst to a user who never connected gives one APNs request (to the
// sandbox, as registered) and one FCM request, with the unread count.
func TestPushOfflineUser(t *testing.T) {
	fakes := newPushFakes(t)
	n := startPushNode(t, fakes)
	const alice, bob = 1, 2
	registerDevice(t, n, bob, "apns", iosToken, true)
	registerDevice(t, n, bob, "fcm", gcmToken, false)
	first := mustPost(t, n, alice, bob, 1, "hi Bob")
	mustPost(t, n, alice, bob, 2, "are you there?")
	last := mustPost(t, n, alice, bob, 3, "call me")
	if !fakes.apns.Wait(5*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) >= 1 }) ||
		!fakes.fcm.Wait(5*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) >= 1 }) {
		t.Fatal("no alert within 5 s")
	}
	waitFor(t, "the push mark", 5*time.Second, func() bool { return n.Log.PushState(bob).Pushed == last.MessageID })
	a, f := fakes.apns.Requests(), fakes.fcm.Requests()
	if len(a) != 1 || len(f) != 1 || a[0].Status != 200 || f[0].Status != 200 {
		t.Fatalf("%d APNs and %d FCM requests (%v %v), want one accepted each", len(a), len(f), a, f)
	}
	if !a[0].Sandbox || a[0].Token != iosToken || a[0].Header.Get("apns-topic") != pushTopic {
		t.Fatalf("APNs request: sandbox %v token %s topic %s", a[0].Sandbox, a[0].Token, a[0].Header.Get("apns-topic"))
	}
	aps := a[0].Payload["aps"].(map[string]any)
	alert, _ := aps["alert"].(map[string]any)
	if aps["badge"] != 3.0 || alert["body"] != "call me" || alert["title"] != "User 1" {
		t.Fatalf("APNs payload %s", a[0].Body)
	}
	android, _ := f[0].Message["android"].(map[string]any)
	an, _ := android["notification"].(map[string]any)
	if f[0].Token != gcmToken || an["notification_count"] != 3.0 {
		t.Fatalf("FCM message %s", f[0].Body)
	}
	debounceEnd := relaylog.IDTime(first.MessageID).Add(200 * time.Millisecond)
	t.Logf("debounce end to request: APNs %v, FCM %v", a[0].At.Sub(debounceEnd), f[0].At.Sub(debounceEnd))
	if a[0].At.After(debounceEnd.Add(2*time.Second)) || f[0].At.After(debounceEnd.Add(2*time.Second)) {
		t.Fatal("alert later than 2 s after the debounce")
	}
	for _, p := range []string{"apns", "fcm"} {
		if pushCounter(t, n.Node, "edgenode_push_requests_total", "provider", p) != 1 {
			t.Fatalf("%s requests metric", p)
		}
	}
}

// A user whose socket takes and acknowledges the message gets no alert.
func TestPushConnectedUserGetsNone(t *testing.T) {
	fakes := newPushFakes(t)
	n := startPushNode(t, fakes)
	const alice, bob = 1, 2
	registerDevice(t, n, bob, "apns", iosToken, false)
	registerDevice(t, n, bob, "fcm", gcmToken, false)
	s := dialSock(t, n, bob)
	msg := mustPost(t, n, alice, bob, 1, "hi")
	s.next(wire.TypeNewMessage, nil)
	if err := s.conn.WriteJSON(map[string]any{"type": wire.TypeAck, "payload": map[string]int64{"upTo": msg.MessageID}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the check after the debounce", 5*time.Second, func() bool {
		return pushCounter(t, n.Node, "edgenode_push_checks_total", "decision", push.DecisionNothing) >= 1
	})
	if k := len(fakes.apns.Requests()) + len(fakes.fcm.Requests()); k != 0 {
		t.Fatalf("%d alerts to a connected user", k)
	}
}

// A socket that stops answering pings loses its presence; the message it
// did not acknowledge is alerted then, long before the ack timeout.
func TestPushPresenceExpiry(t *testing.T) {
	fakes := newPushFakes(t, "--ping-interval", "200ms")
	n := startPushNode(t, fakes)
	const alice, bob = 1, 2
	registerDevice(t, n, bob, "apns", iosToken, false)
	dialSock(t, n, bob) // reads "ready", then nothing: pings go unanswered
	sent := time.Now()
	mustPost(t, n, alice, bob, 1, "hi")
	waitFor(t, "a check deferred while the socket looked alive", 5*time.Second, func() bool {
		return pushCounter(t, n.Node, "edgenode_push_checks_total", "decision", push.DecisionDeferred) >= 1
	})
	if len(fakes.apns.Requests()) != 0 {
		t.Fatal("alerted while the socket was alive")
	}
	if !fakes.apns.Wait(10*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) == 1 }) {
		t.Fatal("no alert after the presence expired")
	}
	if d := fakes.apns.Requests()[0].At.Sub(sent); d > 10*time.Second {
		t.Fatalf("alert %v after the message", d)
	}
}

// A push due when the leader of the user's shard dies is sent by the next
// leader.
// startPushCluster starts three nodes in regions eu, us and ap with the
// fakes' push flags and waits until every shard has three voters.
func startPushCluster(t *testing.T, fakes *pushFakes) (map[string]*testNode, *testNode, *testNode, *testNode) {
	t.Helper()
	return startThree(t, fakes.flags)
}

func TestPushDueDuringLeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	fakes := newPushFakes(t, "--push-debounce", "1500ms")
	nodes, n1, n2, n3 := startPushCluster(t, fakes)
	waitFor(t, "every node routes every shard", 10*time.Second, func() bool {
		return n1.Cluster.Router().Ready() && n2.Cluster.Router().Ready() && n3.Cluster.Router().Ready()
	})
	const alice, bob = 1, 2
	leaderID := shardsOf(t, n1)[relaylog.ShardOf(bob, 4)].Leader
	leader := nodes[leaderID]
	var other *testNode
	for id, n := range nodes {
		if id != leaderID {
			other = n
		}
	}
	registerDevice(t, other, bob, "apns", iosToken, false)
	registerDevice(t, other, bob, "fcm", gcmToken, false)
	msg := mustPost(t, other, alice, bob, 1, "before the crash")
	leader.Kill()
	killed := time.Now()
	if !fakes.apns.Wait(20*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) >= 1 }) ||
		!fakes.fcm.Wait(20*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) >= 1 }) {
		t.Fatalf("the due alert was lost with leader %s", leaderID)
	}
	a, f := fakes.apns.Requests(), fakes.fcm.Requests()
	if a[0].At.Before(killed) || f[0].At.Before(killed) {
		t.Fatal("the old leader sent the alert before it died: the test proves nothing")
	}
	if aps := a[0].Payload["aps"].(map[string]any); aps["badge"] != 1.0 || a[0].Status != 200 || f[0].Status != 200 {
		t.Fatalf("alert %s (%d), FCM %d", a[0].Body, a[0].Status, f[0].Status)
	}
	t.Logf("alert %v after the leader was killed", a[0].At.Sub(killed))
	waitFor(t, "the new leader's push mark", 10*time.Second, func() bool {
		for id, n := range nodes {
			if id != leaderID && n.Log.CheckServing(bob) == nil {
				return n.Log.PushState(bob).Pushed == msg.MessageID
			}
		}
		return false
	})
	// A leadership move while the alert was in flight may repeat it (the
	// mark was not committed yet); the device merges repeats by collapse id.
	for _, r := range fakes.apns.Requests() {
		if r.Header.Get("apns-collapse-id") != a[0].Header.Get("apns-collapse-id") {
			t.Fatalf("alerts with different collapse ids: %q, %q", r.Header.Get("apns-collapse-id"), a[0].Header.Get("apns-collapse-id"))
		}
	}
}

// A push key that cannot be read stops the node at start, not at the first
// alert.
func TestPushBadKeyFileFailsStart(t *testing.T) {
	fakes := newPushFakes(t)
	flags := append([]string(nil), fakes.flags...)
	for i, f := range flags {
		if f == "--apns-key-file" {
			flags[i+1] = filepath.Join(t.TempDir(), "missing.p8")
		}
	}
	args := append([]string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0",
		"--cluster-addr", "127.0.0.1:0", "--advertise-addr", "127.0.0.1"}, flags...)
	cfg, err := config.Load(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(context.Background(), cfg, nil)
	if err == nil {
		n.Shutdown(context.Background())
		t.Fatal("a node started with a missing APNs key")
	}
	if !strings.Contains(err.Error(), "--apns-key-file") {
		t.Fatalf("err = %v", err)
	}
}

// TestPushTokenBelongsToOneUser (issue 13, row 3): in a three-node
// cluster, push tokens (an APNs and an FCM one) registered by alice and
// then by bob, whose shards are led by two different nodes, are alice's
// no longer once bob's registrations have answered; a message to alice
// then alerts nobody, and the phones get bob's alerts only.
func TestPushTokenBelongsToOneUser(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	fakes := newPushFakes(t)
	nodes, n1, n2, n3 := startPushCluster(t, fakes)
	const alice = int64(1)
	var bob int64
	var aliceNode, bobNode *testNode
	waitFor(t, "alice's and bob's shards led by different nodes", 30*time.Second, func() bool {
		ss := shardsOf(t, n1)
		la := ss[relaylog.ShardOf(alice, 4)].Leader
		for u := int64(2); u < 200 && la != ""; u++ {
			if lb := ss[relaylog.ShardOf(u, 4)].Leader; lb != "" && lb != la && nodes[la] != nil && nodes[lb] != nil {
				bob, aliceNode, bobNode = u, nodes[la], nodes[lb]
				return n1.Cluster.Router().Ready() && n2.Cluster.Router().Ready() && n3.Cluster.Router().Ready()
			}
		}
		return false
	})
	t.Logf("alice (%d) on shard %d led by %s, bob (%d) on shard %d led by %s", alice, relaylog.ShardOf(alice, 4), aliceNode.Config.NodeID, bob, relaylog.ShardOf(bob, 4), bobNode.Config.NodeID)

	// An iPhone and an Android phone, each signed in as alice, then as
	// bob, through bob's shard's leader: alice's shard is on the other node.
	registerDevice(t, aliceNode, alice, "apns", iosToken, false)
	registerDevice(t, aliceNode, alice, "fcm", gcmToken, false)
	if devs := aliceNode.Log.Devices(alice); len(devs) != 2 {
		t.Fatalf("alice's devices after her registrations: %v", devs)
	}
	registerDevice(t, bobNode, bob, "apns", iosToken, false)
	registerDevice(t, bobNode, bob, "fcm", gcmToken, false)
	if devs := aliceNode.Log.Devices(alice); len(devs) != 0 {
		t.Fatalf("the tokens are still alice's after bob's registrations answered: %v", devs)
	}
	// bobNode read its own replica: if placement moved the shard's
	// leader meanwhile, that replica may apply bob's second registration
	// a moment after the answer.
	waitFor(t, "bob's two devices on bobNode's replica", 10*time.Second, func() bool { return len(bobNode.Log.Devices(bob)) == 2 })

	mustPost(t, n1, 7, alice, 1, "for alice's eyes only")
	toBob := mustPost(t, n1, 7, bob, 2, "for bob")
	if !fakes.apns.Wait(10*time.Second, func(r []pushtest.APNSRequest) bool { return len(r) >= 1 }) ||
		!fakes.fcm.Wait(10*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) >= 1 }) {
		t.Fatal("no alert for bob on both phones within 10 s")
	}
	waitFor(t, "bob's push mark", 10*time.Second, func() bool { return bobNode.Log.PushState(bob).Pushed == toBob.MessageID })
	for _, r := range fakes.fcm.Requests() {
		if strings.Contains(string(r.Body), "alice") || r.Token != gcmToken {
			t.Fatalf("the Android phone got %s", r.Body)
		}
	}
	for _, r := range fakes.apns.Requests() {
		if strings.Contains(string(r.Body), "alice") || r.Token != iosToken {
			t.Fatalf("the iPhone got %s", r.Body)
		}
	}
}

// asDevice sends method path with body (JSON, or none when nil) to n as
// device dev of user ("": none named) and returns the status and the
// answer's body.
func asDevice(t *testing.T, n *testNode, method, path string, user int64, dev string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	r, _ := http.NewRequest(method, n.URL()+path, rd)
	r.Header.Set("Authorization", "Bearer "+tok(t, user))
	if dev != "" {
		r.Header.Set(wire.DeviceIDHeader, dev)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestPushPerDeviceAcrossNodes (issue 17): bob's phone and tablet each
// registered a push token. The phone holds a socket on a node that does
// not lead bob's shard and acknowledges every message; the tablet is
// away. The tablet is alerted, with its own unread count, and the phone
// is not; once bob revokes the tablet, it is alerted no more.
func TestPushPerDeviceAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	fakes := newPushFakes(t)
	nodes, n1, n2, n3 := startPushCluster(t, fakes)
	waitFor(t, "every node routes every shard", 10*time.Second, func() bool {
		return n1.Cluster.Router().Ready() && n2.Cluster.Router().Ready() && n3.Cluster.Router().Ready()
	})
	const alice, bob = int64(1), int64(2)
	info := shardsOf(t, n1)[relaylog.ShardOf(bob, 4)]
	leader := nodes[info.Leader]
	var edge *testNode
	for _, n := range []*testNode{n1, n2, n3} {
		if n != leader {
			edge = n
		}
	}
	// The tablet links through a sync and registers its token, then goes
	// away; the phone registers its token and stays connected.
	syncDevice(t, edge, bob, "tablet", 0)
	if code, _ := asDevice(t, edge, "POST", "/v1/devices", bob, "tablet", map[string]any{"platform": "fcm", "token": gcmToken}); code != http.StatusCreated {
		t.Fatalf("tablet's token: %d", code)
	}
	if code, _ := asDevice(t, edge, "POST", "/v1/devices", bob, "phone", map[string]any{"platform": "apns", "token": iosToken}); code != http.StatusCreated {
		t.Fatalf("phone's token: %d", code)
	}
	phone := dialDevice(t, edge, bob, "phone")
	waitFor(t, "both devices linked", 10*time.Second, func() bool {
		list, err := leader.Log.LinkedDevices(context.Background(), bob)
		return err == nil && len(list) == 2
	})
	// The phone's socket reaches bob's home after its ready frame (the
	// registration is a stream frame): until then the home would alert
	// the phone as offline.
	waitFor(t, "the phone's socket known at bob's home", 10*time.Second, func() bool {
		for _, n := range nodes {
			if n.Cluster.Presence().DeviceSocket(bob, "phone") { // true only at bob's home
				return true
			}
		}
		return false
	})

	mustPost(t, n1, alice, bob, 1, "one")
	mustPost(t, n1, alice, bob, 2, "two")
	phone.takeMessages(2)
	if !fakes.fcm.Wait(10*time.Second, func(r []pushtest.FCMRequest) bool { return len(r) >= 1 }) {
		t.Fatal("the tablet was not alerted")
	}
	f := fakes.fcm.Requests()
	android, _ := f[0].Message["android"].(map[string]any)
	an, _ := android["notification"].(map[string]any)
	if f[0].Token != gcmToken || an["notification_count"] != 2.0 {
		t.Fatalf("tablet's alert %s, want its 2 unread", f[0].Body)
	}
	if n := len(fakes.apns.Requests()); n != 0 {
		t.Fatalf("%d alerts to the phone, whose socket took the messages", n)
	}

	// The list, asked at a node that does not lead bob's shard, shows
	// which devices get alerts.
	_, body := asDevice(t, edge, "GET", "/v1/devices", bob, "", nil)
	var list wire.DeviceList
	json.Unmarshal(body, &list)
	withPush := map[string]bool{}
	for _, d := range list.Devices {
		withPush[d.DeviceID] = d.Push
	}
	if len(withPush) != 2 || !withPush["phone"] || !withPush["tablet"] {
		t.Fatalf("devices listed %+v, want phone and tablet with push", list.Devices)
	}

	// Revoked, the tablet's token goes with it.
	if code, _ := asDevice(t, edge, "DELETE", "/v1/devices/tablet", bob, "phone", nil); code != http.StatusNoContent {
		t.Fatalf("revoke: %d", code)
	}
	waitFor(t, "the revoked tablet's token gone on every replica", 10*time.Second, func() bool {
		for _, n := range nodes {
			for _, d := range n.Log.Devices(bob) {
				if d.Token == gcmToken {
					return false
				}
			}
		}
		return true
	})
	// Leadership may have moved since the start: count every node's checks.
	checks := func() float64 {
		var sum float64
		for _, n := range nodes {
			for _, d := range []string{push.DecisionNothing, push.DecisionDeferred, push.DecisionAlerted} {
				sum += pushCounter(t, n.Node, "edgenode_push_checks_total", "decision", d)
			}
		}
		return sum
	}
	// The phone takes the next message without acknowledging it: the
	// leader's check then surely finds it due, and defers the phone.
	before := checks()
	third := time.Now()
	mustPost(t, n1, alice, bob, 3, "three")
	phone.next(wire.TypeNewMessage, nil)
	waitFor(t, "the leader's check of the new message", 20*time.Second, func() bool { return checks() > before })
	t.Logf("checks before %v, after %v", before, checks())
	if n := len(fakes.fcm.Requests()); n != 1 {
		t.Fatalf("%d alerts to the tablet, one of them after it was revoked", n)
	}
	if a := fakes.apns.Requests(); len(a) != 0 {
		// The placer may move bob's shard to another leader meanwhile:
		// the new home hears of the phone's socket within the reconcile,
		// and must not take the phone for offline before.
		now := shardsOf(t, n1)[relaylog.ShardOf(bob, 4)]
		t.Logf("bob's shard: term %d, %s at the start; term %d, %s now", info.Term, info.Leader, now.Term, now.Leader)
		t.Fatalf("%d alerts to the phone: %s at %v (message three at %v)", len(a), a[0].Body, a[0].At, third)
	}
}
