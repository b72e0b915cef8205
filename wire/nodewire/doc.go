// Package nodewire is the node-to-node protocol of a cluster: what one
// edgenode process says to another over the mesh (cluster/mesh carries it
// on QUIC streams). Clients never see it; their protocol, the JSON REST
// bodies and WebSocket frames of docs/API.md, is package wire, whose
// request bodies (wire.NewMessageRequest, wire.DeviceRequest) a forwarded
// call carries as they are.
//
// # Streams
//
//	call stream       one CallRequest, answered by one CallResponse
//	                  (or many, each tagged with its request's id:
//	                  WriteTaggedFrame, ReadTaggedFrame)
//	subscribe stream  SubscribeFrames both ways for as long as it stays open
//
// # Frames
//
// Every frame is a uvarint length followed by that many bytes of payload;
// frames are at most MaxNodeFrameBytes. CallRequest, CallResponse and
// SubscribeFrame are written in the binary form of codec.go (a tag byte,
// then the fields as internal/varint primitives in declaration order);
// JSON, the protocol's first form, is still read, and anything else is
// written as JSON. The binary form is shared by nodes of different
// versions during a rolling upgrade: it changes only by appending fields
// that are written when set (see CallResponse.Flags), never by changing
// one.
//
// The package also names the raft server address of a node's data
// (RaftAddress), which nodes exchange in raft's own messages.
package nodewire
