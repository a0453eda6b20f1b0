package netlab

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// rawSender sends the frames given in hex on an interface through an
// AF_PACKET socket, round after round, as fast as Python can, for secs
// seconds (0: one round), and prints how many went.
const rawSender = `
import socket, sys, time
ifname, secs, frames = sys.argv[1], float(sys.argv[2]), [bytes.fromhex(h) for h in sys.argv[3:]]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
n = 0
end = time.monotonic() + secs
while True:
    for f in frames:
        try:
            s.send(f)
            n += 1
        except OSError:
            pass
    if secs == 0 or (n % 256 < len(frames) and time.monotonic() > end):
        break
print(n)
`

// RawSenderScript writes the raw frame sender (python3) into dir and
// returns its path, for Flood or for `python3 PATH IFNAME SECS HEX...`.
func RawSenderScript(dir string) (string, error) {
	p := filepath.Join(dir, "raw.py")
	return p, os.WriteFile(p, []byte(rawSender), 0o644)
}

// Flood sends frames on ifname in ns through the script at script (see
// RawSenderScript) for secs seconds, as fast as it can, and returns how
// many it sent. It blocks until done.
func (l *Lab) Flood(ns, script, ifname string, secs int, frames ...[]byte) (int, error) {
	args := []string{"python3", script, ifname, strconv.Itoa(secs)}
	for _, f := range frames {
		args = append(args, hex.EncodeToString(f))
	}
	out, err := l.Exec(ns, args...)
	if err != nil {
		return 0, fmt.Errorf("flood: %w: %s", err, out)
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

// BroadcastUDP is a minimal broadcast IPv4/UDP frame from src (a MAC) and
// 10.77.0.3 to port 9 (discard), as a storm is made of.
func BroadcastUDP(src [6]byte) []byte {
	f := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	f = append(f, src[:]...)
	f = append(f, 0x08, 0x00)
	return append(f, 0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 77, 0, 3, 255, 255, 255, 255, 0, 9, 0, 9, 0, 8, 0, 0)
}
