#!/usr/bin/env bash
# macvsw's test command: README's, and what CI (.ci/run) runs.
#
#   tests/run.sh                       go vet ./... && go test -race ./...
#   tests/run.sh -run Netns ./tests/   go vet ./... && go test -race -run Netns ./tests/
#   tests/run.sh --missing             print the Debian packages the tests need
#                                      that are not installed, and exit
#
# On Debian or Ubuntu, as root, it first installs the packages the tests
# use that are missing (apt-get runs only when something is); then it runs
# go vet and go test -race. Run as root, it sets MACVSW_TEST_REQUIRE=1, so
# a test that cannot run here (no network namespaces, a tool missing)
# fails with what to install instead of skipping: a root run either runs
# every test or says why not. Without root the tests that need root skip
# with a message, and so do tests whose tools are missing.
#
# Needs Go >= 1.26.8 (https://go.dev/dl/) in PATH or in /usr/local/go/bin.
set -euo pipefail
here=${BASH_SOURCE[0]%/*}
[[ $here == "${BASH_SOURCE[0]}" ]] && here=.
cd "$here/.."

# Debian package, and a command that shows it is installed. The same list
# as tests/testenv.Packages (TestRunScriptPackages checks).
packages=(
	iproute2:ip
	iputils-ping:ping
	iperf3:iperf3
	ethtool:ethtool
	python3:python3
	curl:curl
	util-linux:nsenter
	netcat-openbsd:nc
	procps:sysctl
	qemu-system-x86:qemu-system-x86_64
	git:git
)

missing=()
for p in "${packages[@]}"; do
	command -v "${p#*:}" >/dev/null 2>&1 || missing+=("${p%%:*}")
done

if [[ "${1:-}" == --missing ]]; then
	if ((${#missing[@]})); then
		printf '%s\n' "${missing[@]}"
	fi
	exit 0
fi

if ((${#missing[@]})); then
	if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		echo "tests/run.sh: installing ${missing[*]}" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "tests/run.sh: not installed: ${missing[*]} (as root on Debian this script installs them);" \
			"the tests that need them will skip" >&2
	fi
fi

export PATH=$PATH:/usr/local/go/bin
if ! command -v go >/dev/null 2>&1; then
	echo "tests/run.sh: needs Go >= 1.26.8 in PATH (https://go.dev/dl/)" >&2
	exit 1
fi

if [[ $EUID -eq 0 ]]; then
	# As root every test can run: a skip for a missing requirement is a
	# failure (tests/testenv). MACVSW_TEST_REQUIRE=0 opts out.
	export MACVSW_TEST_REQUIRE=${MACVSW_TEST_REQUIRE:-1}
fi

if (($#)); then
	go vet ./... && go test -race "$@"
else
	go vet ./... && go test -race ./...
fi
