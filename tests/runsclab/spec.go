package runsclab

// The OCI runtime spec subset Spec writes (config.json of a bundle); the
// field names are the spec's, https://github.com/opencontainers/runtime-spec.

type ociSpec struct {
	OCIVersion string   `json:"ociVersion"`
	Process    ociProc  `json:"process"`
	Root       ociRoot  `json:"root"`
	Hostname   string   `json:"hostname"`
	Mounts     []ociMnt `json:"mounts"`
	Linux      ociLinux `json:"linux"`
}

type ociProc struct {
	Args         []string `json:"args"`
	Cwd          string   `json:"cwd"`
	Env          []string `json:"env"`
	User         ociUser  `json:"user"`
	Capabilities ociCaps  `json:"capabilities"`
	Rlimits      []ociRl  `json:"rlimits,omitempty"`
}

type ociUser struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

type ociCaps struct {
	Bounding    []string `json:"bounding"`
	Effective   []string `json:"effective"`
	Permitted   []string `json:"permitted"`
	Inheritable []string `json:"inheritable"`
}

type ociRl struct {
	Type string `json:"type"`
	Hard uint64 `json:"hard"`
	Soft uint64 `json:"soft"`
}

type ociRoot struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly"`
}

type ociMnt struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

type ociLinux struct {
	Namespaces []ociNS `json:"namespaces"`
}

type ociNS struct {
	Type string `json:"type"`
	Path string `json:"path,omitempty"`
}

// Capabilities are what the container's processes (and `runsc exec`) get:
// Docker's default set plus CAP_NET_RAW and CAP_NET_ADMIN, so ping, ip and
// raw sockets work.
var Capabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP",
	"CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// Spec returns the OCI spec of a sandbox: args run as root in /, the
// host's / as a read-only rootfs, its own /proc, /dev (runsc fills it with
// its emulated devices), /dev/pts, /dev/shm, /tmp (tmpfs, writable) and a
// read-only /sys, new pid, ipc, uts and mount namespaces, and the existing
// network namespace at netnsPath.
func Spec(args []string, netnsPath, hostname string) any {
	return ociSpec{
		OCIVersion: "1.0.2",
		Process: ociProc{
			Args: args,
			Cwd:  "/",
			Env: []string{
				"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"HOME=/tmp",
				"TERM=dumb",
			},
			Capabilities: ociCaps{
				Bounding:    Capabilities,
				Effective:   Capabilities,
				Permitted:   Capabilities,
				Inheritable: Capabilities,
			},
			Rlimits: []ociRl{{Type: "RLIMIT_NOFILE", Hard: 65536, Soft: 65536}},
		},
		Root:     ociRoot{Path: "/", Readonly: true},
		Hostname: hostname,
		Mounts: []ociMnt{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=256m"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: ociLinux{Namespaces: []ociNS{
			{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"},
			{Type: "network", Path: netnsPath},
		}},
	}
}
