//go:build linux && race

package endpoints

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// zero-allocation tests that go through gVisor's pools skip.
const raceEnabled = true
