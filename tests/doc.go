// Package tests holds macvsw's cross-package and integration tests: repo
// hygiene, and the network-namespace tests (TestNetns...) that need root.
// It has no non-test code.
package tests
