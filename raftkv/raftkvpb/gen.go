// Package raftkvpb holds the protobuf messages and gRPC services of the raft
// store; the generated code is committed so a build needs no protoc.
package raftkvpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative raftkv.proto
