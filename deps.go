//go:build tools

package tools

import (
	_ "github.com/HdrHistogram/hdrhistogram-go"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/gorilla/websocket"
	_ "github.com/hashicorp/go-hclog"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/quic-go/quic-go"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/mobile/bind/java"
	_ "golang.org/x/mobile/bind/objc"
	_ "golang.org/x/mobile/bind/seq"
	_ "modernc.org/sqlite"
)
