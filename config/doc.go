// Package config loads, validates and writes macvsw's configuration file.
//
// It turns a YAML file into plain typed structs ([Config], [Port], …) with
// every default applied, so the rest of macvsw never sees a missing value.
// It sits between cmd/macvsw, which calls [Load], [RegisterFlags] and
// [Overrides.Apply], and the switch core, from which it takes only
// vswitch.Mode and vswitch.MAC. It opens no devices and makes no
// syscalls beyond reading the file; [Config.CheckHost] is the one place
// that looks at the host (`macvsw config check` calls Load, then
// CheckHost).
//
// # Entry points
//
//   - [Load] / [Parse]: file → validated *Config.
//   - [Config.Validate]: re-check a Config built or changed in code.
//   - [Config.CheckHost]: netns paths and interfaces exist on this host.
//   - [RegisterFlags] and [Overrides.Apply]: -lower, -log-format,
//     -log-level and -metrics-listen override the file.
//   - [Config.Marshal]: the running configuration as YAML that Parse reads
//     back to an equal Config.
//   - [Diff] and [Config.InheritMACs]: what a reload (SIGHUP) changes.
//
// # Errors
//
// Unknown keys are errors, as are repeated keys. Parse reports every
// problem it finds, joined with errors.Join in file order; each is a
// [*FieldError] that names the file, line, column and field path:
//
//	macvsw.yaml:12:5: ports[1].mac: bad MAC address "zz:00:00:00:00:01"
//	macvsw.yaml:14:5: ports[1].mtu: 9000 above lower.mtu 1500 (want 68..1500, or 0 to inherit; …)
//
// and wraps one class, for errors.Is: [ErrSyntax], [ErrUnknownKey],
// [ErrInvalidValue], [ErrDuplicate], [ErrMissing] or [ErrConflict].
//
// # The file
//
// Every key, its type and default (REFERENCE.md has the same as a table):
//
//	lower:                    # the NIC the ports sit on
//	  interface: eth0         # string, required; Linux interface name (≤ 15 bytes)
//	  queues: 0               # int 0..16; AF_PACKET fanout members; 0 = one per CPU, at most 16
//	  promiscuous: true       # bool; receive frames for every port MAC (default true)
//	  mtu: 0                  # int, 0 or 68..65535; 0 = follow the interface; ports may not exceed it
//
//	broadcast:                # the shared broadcast queue (kernel bcqueuelen / bc_cutoff)
//	  queue_len: 1000         # int 0..100000; the lower's own request; the switch uses the
//	                          #   largest of this and every port's bcqueuelen
//	  cutoff: 1               # int (int32); a multicast group is queued when more than cutoff
//	                          #   ports subscribe; negative = deliver every flood inline
//
//	reassembly:               # IPv4 fragments to group MACs (kernel ipfrag_*; BEHAVIOUR.md §9.18)
//	  high: 4MiB              # size 512KiB..1GiB (bytes, or KiB/MiB/GiB); past it the oldest
//	                          #   datagrams are evicted
//	  low: 3MiB               # size 0..high; what eviction brings memory down to
//	  timeout: 30s            # duration 1s..2m, or seconds; from a datagram's first fragment
//	  max_per_source: 0       # size, 0 or 128KiB..high; one source address's share, past which
//	                          #   its own oldest datagrams are evicted; 0 = a quarter of high
//
//	control:                  # local control API
//	  socket: /run/macvsw/macvsw.sock   # absolute path, ≤ 107 bytes
//	  group: ""               # group allowed to connect (name or gid); "" = root only
//
//	metrics:                  # optional
//	  listen: ""              # host:port of the Prometheus endpoint; "" = disabled
//
//	log:
//	  format: text            # text | json
//	  level: info             # debug | info | warn | error
//
//	ports:                    # list; order does not matter
//	  - name: vm1             # required, unique, ≤ 15 bytes of [A-Za-z0-9_.-]
//	    mode: vepa            # private | vepa | bridge | passthru | source; default vepa
//	                          #   (the kernel's default; CNI's macvlan plugin picks bridge)
//	    mac: 02:00:00:00:00:01  # unicast, not all zeros, unique among ports; default: a random
//	                          #   locally administered unicast address generated at load
//	                          #   (Config.InheritMACs keeps it across reloads); a passthru
//	                          #   port takes the lower's MAC and must not set mac
//	    mtu: 0                # int, 0 or 68..65535, ≤ lower.mtu when that is set; 0 = the lower's
//	    queues: 1             # int 1..256 (MAX_TAP_QUEUES); frames are spread by flow hash
//	    queue_len: 1000       # int 1..65536; frames per queue before drops
//	    allmulticast: true    # bool; receive every multicast group
//	    multicast: []         # group MACs received when allmulticast is false (an error otherwise)
//	    source_macs: []       # source mode only: unicast MACs whose frames are copied here
//	    nodst: false          # source mode only: matching frames get no other delivery
//	    nopromisc: false      # passthru only: do not make the lower promiscuous
//	    bcqueuelen: 1000      # int 0..100000; this port's broadcast queue length request
//	    tap:                  # a tap device in a network namespace; or afpacket, not both
//	      netns: vm1          # required: a name in /var/run/netns, or an absolute path; must exist (CheckHost)
//	      ifname: vm1         # name inside the netns, ≤ 15 bytes; default: the port name
//	      addresses: []       # CIDR prefixes assigned to it, e.g. 10.0.0.2/24, fd00::2/64
//	      offloads: true      # virtio-net header offloads (IFF_VNET_HDR)
//	    afpacket:             # an existing interface, attached with AF_PACKET; without mac the
//	                          #   port takes the MAC of the interface's veth peer (or its own)
//	      interface: veth0    # required; not lower.interface; one port per interface
//
// Rules between keys follow the kernel's macvlan (BEHAVIOUR.md §1, §5):
// a passthru port must be the only port; two ports may not share a MAC
// (the kernel lets both exist and refuses the second `ip link set up` with
// EADDRINUSE; we refuse the file); a port MTU may not exceed the lower's.
// Two tap ports may not use the same ifname in the same netns.
//
// YAML anchors and aliases work; merge keys (<<) do not (they are unknown
// keys). An empty value (key with nothing after the colon) means an empty
// section or list, and is an error for a scalar such as mtu. Integers may
// be written in any YAML 1.2 form (1500, 0x5dc); booleans are true/false.
package config
