package node

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgenode/edgenode/cluster"
	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/push"
)

// pushOptions reads the push configuration: the provider clients and the
// dispatcher's settings, without the store and presence the node adds once
// they exist. ok is false when neither APNs nor FCM is configured.
func pushOptions(cfg config.Config, logger *slog.Logger, reg prometheus.Registerer) (opts push.Options, ok bool, err error) {
	if cfg.APNSKeyFile == "" && cfg.FCMCredentialsFile == "" {
		return push.Options{}, false, nil
	}
	client, err := push.NewHTTPClient(cfg.PushCAFile)
	if err != nil {
		return push.Options{}, false, fmt.Errorf("node: %w", err)
	}
	opts = push.Options{
		Debounce: cfg.PushDebounce, AckTimeout: cfg.PushAckTimeout, Preview: cfg.PushPreview,
		Logger: logger.With("component", "push"), Registerer: reg,
	}
	if cfg.APNSKeyFile != "" {
		key, err := push.LoadAPNSKey(cfg.APNSKeyFile)
		if err != nil {
			return push.Options{}, false, fmt.Errorf("node: --apns-key-file: %w", err)
		}
		c, err := push.NewAPNS(push.APNSOptions{
			Key: key, KeyID: cfg.APNSKeyID, TeamID: cfg.APNSTeamID, Topic: cfg.APNSTopic,
			URL: cfg.APNSURL, SandboxURL: cfg.APNSSandboxURL, Client: client,
		})
		if err != nil {
			return push.Options{}, false, fmt.Errorf("node: %w", err)
		}
		opts.APNS = c
	}
	if cfg.FCMCredentialsFile != "" {
		sa, err := push.LoadServiceAccount(cfg.FCMCredentialsFile)
		if err != nil {
			return push.Options{}, false, fmt.Errorf("node: --fcm-credentials-file: %w", err)
		}
		c, err := push.NewFCM(push.FCMOptions{Account: sa, URL: cfg.FCMURL, Client: client})
		if err != nil {
			return push.Options{}, false, fmt.Errorf("node: --fcm-credentials-file: %w", err)
		}
		opts.FCM = c
	}
	return opts, true, nil
}

// startPush starts the dispatcher on the node's relay log; a user is
// online with a socket anywhere in the cluster (the hub here, the cluster's
// presence elsewhere).
func (n *Node) startPush(opts push.Options) *push.Dispatcher {
	hub, remote := n.Hub, n.Cluster.Presence()
	opts.Store = n.Log
	opts.Online = func(user int64) bool { return hub.Online(user) || remote.Online(user) }
	opts.DeviceOnline = func(user int64, dev string) bool {
		return hub.DeviceOnline(user, dev) || remote.DeviceSocket(user, dev)
	}
	return push.New(opts)
}

// fanOut hands the log's commit stream to the parts that act on commits,
// until ctx ends: a user's queue got events (the user's sockets here, the
// cluster's subscriptions and homes, push), or this node starts or stops
// serving a shard (push). Commits made before the parts existed, a
// restarted node replaying its log, wait in the stream until now.
func (n *Node) fanOut(ctx context.Context) {
	go n.deliver(ctx)
	n.Log.Commits().Run(ctx, func(user int64) {
		if !n.Cluster.HomePushes(user) {
			n.Hub.Committed(user)
		}
		n.Cluster.Committed(user)
		if n.Push != nil {
			n.Push.Committed(user)
		}
	}, func(shard int, serving bool) {
		if n.Push != nil {
			n.Push.Serving(shard, serving)
		}
	})
}

// deliver hands the cluster's inbox to this node's hub and push until ctx
// ends: a home's wake-up of a user's sockets here (with the events when
// they came along), a contact's status for the watchers here, a typing
// indicator for a user's sockets here, and, at a user's home, the user
// gone offline everywhere.
func (n *Node) deliver(ctx context.Context) {
	inbox := n.Cluster.Inbox()
	for {
		batch := inbox.Next(ctx)
		if batch == nil {
			return
		}
		for _, d := range batch {
			switch d.Kind {
			case cluster.Wake:
				if d.Events != nil {
					n.Hub.Offer(d.User, d.After, d.Events)
				} else {
					n.Hub.Committed(d.User)
				}
			case cluster.Status:
				n.Hub.PushStatus(d.Status)
			case cluster.Typing:
				n.Hub.DeliverTyping(d.From, d.User, d.Typing, d.FromOnline)
			case cluster.Offline:
				if n.Push != nil {
					n.Push.Offline(d.User)
				}
			}
		}
	}
}

// Expire runs the log's expiry now on the shards this node leads, with
// the cluster routing receipts for other nodes' shards (RunExpiry does it
// every minute).
func (n *Node) Expire(ctx context.Context) error {
	return n.Log.ExpireVia(ctx, n.Cluster.Receipts(), n.Members)
}
