// Package filerpb is weedfuse's own, wire-compatible subset of SeaweedFS's
// filer_pb protocol (package filer_pb, service SeaweedFiler). The .pb.go files
// are generated from filer.proto by `make proto` and committed.
package filerpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative filer.proto
