//go:build linux && !race

package endpoints

const raceEnabled = false
