package main

import (
	"fmt"

	"github.com/macvsw/macvsw/config"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// openSocket opens a socket port's endpoint.
func (d *daemon) openSocket(pc config.Port) (stack.LinkEndpoint, stateDevice, error) {
	return nil, stateDevice{}, fmt.Errorf("socket ports: not available in this build")
}
