package vswitch

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Police limits what one port may send into the switch: its whole traffic
// in frames and bits per second, and its floods (broadcast and multicast)
// separately, at a lower rate: storm control. Each limit is a token bucket
// with a burst; a frame over a limit is dropped and counted on the port
// (DropPoliced, DropStorm). Zero fields are no limit; a zero Police is no
// policing, the kernel's behaviour (BEHAVIOUR.md §9).
type Police struct {
	PPS uint64 // frames per second (a TSO super-frame counts once)
	BPS uint64 // bits per second, counting whole frames with their Ethernet header
	// Burst is the frames the PPS bucket holds; 0 means PPS/20 (50 ms),
	// at least 16.
	Burst uint64
	// BurstBytes is the bytes the BPS bucket holds; 0 means BPS/8/20
	// (50 ms), at least two 64 KiB super-frames.
	BurstBytes uint64
	// FloodPPS limits broadcast and multicast frames per second.
	FloodPPS uint64
	// FloodBurst is the frames the flood bucket holds; 0 means
	// FloodPPS/20, at least 8.
	FloodBurst uint64
}

// Police bounds.
const (
	// MaxPolicePPS and MaxPoliceBPS bound the rates (100 Mpps, 1 Tbit/s):
	// above them the buckets' arithmetic would lose precision, and no port
	// gets near them.
	MaxPolicePPS = 100_000_000
	MaxPoliceBPS = 1_000_000_000_000
	minBurst     = 16
	minFlood     = 8
	minBurstB    = 2 * (65535 + ethHeaderLen + vlanHeaderLen)
	maxBurst     = 1 << 32
)

// IsZero reports whether p limits nothing.
func (p Police) IsZero() bool { return p.PPS == 0 && p.BPS == 0 && p.FloodPPS == 0 }

// withDefaults returns p with its bursts filled in.
func (p Police) withDefaults() Police {
	if p.PPS > 0 && p.Burst == 0 {
		p.Burst = max(p.PPS/20, minBurst)
	}
	if p.BPS > 0 && p.BurstBytes == 0 {
		p.BurstBytes = max(p.BPS/8/20, minBurstB)
	}
	if p.FloodPPS > 0 && p.FloodBurst == 0 {
		p.FloodBurst = max(p.FloodPPS/20, minFlood)
	}
	return p
}

// check returns the first field of p that is out of range.
func (p Police) check() (field string, err error) {
	switch {
	case p.PPS > MaxPolicePPS:
		return "police.pps", fmt.Errorf("%d above %d", p.PPS, MaxPolicePPS)
	case p.FloodPPS > MaxPolicePPS:
		return "police.flood_pps", fmt.Errorf("%d above %d", p.FloodPPS, MaxPolicePPS)
	case p.BPS > MaxPoliceBPS:
		return "police.bps", fmt.Errorf("%d above %d", p.BPS, MaxPoliceBPS)
	case p.BPS > 0 && p.BurstBytes > 0 && p.BurstBytes < 65535+ethHeaderLen:
		return "police.burst_bytes", fmt.Errorf("%d cannot hold one 64 KiB frame: every large frame would be dropped", p.BurstBytes)
	case p.Burst > maxBurst:
		return "police.burst", fmt.Errorf("%d above %d", p.Burst, maxBurst)
	case p.FloodBurst > maxBurst:
		return "police.flood_burst", fmt.Errorf("%d above %d", p.FloodBurst, maxBurst)
	case p.BurstBytes > maxBurst:
		return "police.burst_bytes", fmt.Errorf("%d above %d", p.BurstBytes, maxBurst)
	}
	return "", nil
}

// policer is a port's set of token buckets. It lives as long as the
// port's Police setting: a change of any other port setting keeps its
// state.
type policer struct {
	pps   bucket
	bps   bucket
	flood bucket
	// strikes counts drops since the last frame that passed; resume is
	// when the bucket that refused the last one has room again (ns).
	strikes atomic.Uint32
	resume  atomic.Int64
}

// Throttling: after throttleStrikes drops in a row, the port's reader is
// paused until its bucket has room again (at most maxThrottle), so that a
// port sending far above its limit costs the switch no more CPU than
// one within it; what it sends meanwhile waits in, or overflows, its own
// device's queue (Port.Throttle).
const (
	throttleStrikes = 8
	maxThrottle     = 10 * time.Millisecond
)

func newPolicer(p Police) *policer {
	if p.IsZero() {
		return nil
	}
	p = p.withDefaults()
	pl := &policer{}
	pl.pps.init(p.PPS, p.Burst)
	pl.bps.init(p.BPS, p.BurstBytes*8)
	pl.flood.init(p.FloodPPS, p.FloodBurst)
	return pl
}

// allow charges one frame of size bytes (a flood when group) and reports
// whether it conforms, and if not, which limit refused it.
func (pl *policer) allow(size int, group bool) (bool, DropReason) {
	now := monoNow()
	switch {
	case group && !pl.flood.take(now, 1):
		pl.strike(&pl.flood, 1)
		return false, DropStorm
	case !pl.pps.take(now, 1):
		pl.strike(&pl.pps, 1)
		return false, DropPoliced
	case !pl.bps.take(now, uint64(size)*8):
		pl.strike(&pl.bps, uint64(size)*8)
		return false, DropPoliced
	}
	if pl.strikes.Load() != 0 {
		pl.strikes.Store(0)
	}
	return true, 0
}

func (pl *policer) strike(b *bucket, n uint64) {
	pl.strikes.Add(1)
	pl.resume.Store(b.ready(n))
}

// throttle returns how long the port's reader should pause: 0 unless
// the last throttleStrikes frames were all dropped.
func (pl *policer) throttle() time.Duration {
	if pl.strikes.Load() < throttleStrikes {
		return 0
	}
	return min(time.Duration(pl.resume.Load()-monoNow()), maxThrottle)
}

// bucket is a token bucket kept as a theoretical arrival time (the GCRA
// form): one atomic word, no lock, shared by every queue of the port. A
// unit costs 1e9/rate ns; n units conform when, charged, the bucket's time
// is at most burst units ahead of now: a full bucket passes burst units.
type bucket struct {
	rate uint64       // units per second; 0: no limit
	tau  int64        // burst tolerance, ns
	tat  atomic.Int64 // ns since monoEpoch
}

func (b *bucket) init(rate, burst uint64) {
	b.rate = rate
	if rate > 0 {
		// In floating point: burst·1e9 overflows 64 bits for large bursts.
		b.tau = int64(float64(burst) * float64(time.Second) / float64(rate))
	}
}

// take charges n units at time now (ns); false if they do not conform,
// in which case nothing is charged.
func (b *bucket) take(now int64, n uint64) bool {
	if b.rate == 0 {
		return true
	}
	inc := int64(n * uint64(time.Second) / b.rate)
	for {
		old := b.tat.Load()
		t := max(old, now)
		if t+inc-now > b.tau {
			return false
		}
		if b.tat.CompareAndSwap(old, t+inc) {
			return true
		}
	}
}

// ready returns when n units will conform (ns since monoEpoch).
func (b *bucket) ready(n uint64) int64 {
	return b.tat.Load() + int64(n*uint64(time.Second)/b.rate) - b.tau
}

var monoEpoch = time.Now()

// monoNow is the monotonic clock in ns since the process started.
func monoNow() int64 { return int64(time.Since(monoEpoch)) }
