package conformance

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// IFLA_MACVLAN_BC_CUTOFF (include/uapi/linux/if_link.h). The ip(8) on this
// VM predates its keyword (bclim), so the kernel side of case 42 sends the
// netlink request itself.
const iflaMacvlanBCCutoff = 9

// setBCCutoff sets bc_cutoff on the macvlan ifname in namespace ns (it is
// port-set wide: the lower's whole set of macvlans takes it).
func setBCCutoff(ns, ifname string, cutoff int32) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		err = func() error {
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				return err
			}
			req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
			msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
			msg.Index = int32(ifi.Index)
			req.AddData(msg)
			info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
			info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("macvlan"))
			data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
			v := make([]byte, 4)
			binary.LittleEndian.PutUint32(v, uint32(cutoff)) // host order, x86
			data.AddRtAttr(iflaMacvlanBCCutoff, v)
			req.AddData(info)
			_, err = req.Execute(unix.NETLINK_ROUTE, 0)
			return err
		}()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("bc_cutoff %d on %s in %s: %w", cutoff, ifname, ns, err)
	}
	return nil
}
