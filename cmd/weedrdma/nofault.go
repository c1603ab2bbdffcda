//go:build !rdmafault

package main

import "github.com/weedfuse/weedfuse/rdma"

// This build has no fault injection (see fault.go, -tags rdmafault).
type faults struct{}

func faultFlags() faults                 { return faults{} }
func (faults) apply(*rdma.ServerOptions) {}
func (faults) log()                      {}
