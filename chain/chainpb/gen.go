// Package chainpb holds the generated wire types and gRPC service of the
// chain store. The generated files are committed so a build needs no protoc.
package chainpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative chain.proto
