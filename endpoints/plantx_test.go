//go:build linux

package endpoints

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// A frame above the MTU goes to a receiver that negotiated GSO (as the
// kernel delivers it: no MTU check on receive) and is dropped for one that
// did not.
func TestPlanTxOversize(t *testing.T) {
	f := frameSpec{payload: 2000, tcpFlags: header.TCPFlagAck}.build()
	for _, tc := range []struct {
		canGSO bool
		want   txAction
	}{{true, txDirect}, {false, txDrop}} {
		_, act, why := planTx(stack.GSO{}, f, len(f), 1500, tc.canGSO, tc.canGSO)
		if act != tc.want || (act == txDrop && why != DropOversize) {
			t.Errorf("planTx(%d-byte frame, MTU 1500, canGSO %v) = %v %v, want %v", len(f), tc.canGSO, act, why, tc.want)
		}
	}
}
