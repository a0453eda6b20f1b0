#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the module, one after the other, and
# reports how many inputs each tried.
#
# Usage: tests/fuzz.sh [-t DURATION] [-j WORKERS] [-m DURATION] [-o DIR] [REGEXP]
#
#   -t DURATION  how long each target runs: go test -fuzztime, so a time
#                (10m, 90s) or a count of inputs (100000x).
#                Default: $FUZZTIME, or 10m.
#   -j WORKERS   fuzzing processes per target: go test -parallel.
#                Default: $FUZZ_PARALLEL, or Go's (GOMAXPROCS).
#   -m DURATION  how long to minimize each new input or crasher:
#                go test -fuzzminimizetime. Default: $FUZZ_MINIMIZE_TIME,
#                or 10s. Go's own default, 60s, stalls a target for up to a
#                minute on every new input: while a worker minimizes, no
#                executions happen or are counted.
#   -o DIR       keep each target's go test output in DIR/<pkg>.<target>.log.
#                Default: $FUZZ_LOG_DIR, or a new temporary directory.
#   REGEXP       run only the targets whose name matches (grep -E).
#
# Targets are found with `go test -list '^Fuzz' ./...` from the module root
# (set GOFLAGS=-p=1 to build one package at a time on a busy machine). At
# the end a table gives, per target, the time it ran, the executions go test
# reported and executions per second. The script fails if any target fails:
# a crasher is written by go test to the package's testdata/fuzz/<target>/,
# where it stays as a seed-corpus entry for the fix (commit it with the fix).
#
# Examples:
#   tests/fuzz.sh                      # every target, 10 minutes each
#   tests/fuzz.sh -t 1m -j 1           # a quick pass on one core per target
#   FUZZTIME=30s tests/fuzz.sh Defrag  # FuzzDefrag only
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}

fuzztime=${FUZZTIME:-10m}
parallel=${FUZZ_PARALLEL:-}
minimize=${FUZZ_MINIMIZE_TIME:-10s}
logdir=${FUZZ_LOG_DIR:-}
while getopts 't:j:m:o:h' opt; do
	case $opt in
	t) fuzztime=$OPTARG ;;
	j) parallel=$OPTARG ;;
	m) minimize=$OPTARG ;;
	o) logdir=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -le 1 ]] || usage
filter=${1:-}

cd "$(dirname "$0")/.."
if [[ -z $logdir ]]; then
	logdir=$(mktemp -d "${TMPDIR:-/tmp}/macvsw-fuzz.XXXXXX")
fi
mkdir -p "$logdir"

# seconds converts go's elapsed time (1m0s, 31s, 1h2m3s) to seconds.
seconds() {
	local d=$1 total=0 n
	if [[ $d =~ ^([0-9]+)h(.*)$ ]]; then
		total=$((total + BASH_REMATCH[1] * 3600))
		d=${BASH_REMATCH[2]}
	fi
	if [[ $d =~ ^([0-9]+)m(.*)$ ]]; then
		total=$((total + BASH_REMATCH[1] * 60))
		d=${BASH_REMATCH[2]}
	fi
	if [[ $d =~ ^([0-9]+)(\.[0-9]+)?s$ ]]; then
		n=${BASH_REMATCH[1]}
		total=$((total + n))
	fi
	echo "$total"
}

# List the targets as "package target" lines: go test -list prints each
# package's matching names, then its "ok  <package>" line.
echo "finding fuzz targets (go test -list '^Fuzz' ./...)" >&2
listing=$(go test -list '^Fuzz' ./...)
targets=()
names=()
while IFS= read -r line; do
	if [[ $line =~ ^Fuzz[A-Za-z0-9_]*$ ]]; then
		names+=("$line")
	elif [[ $line =~ ^ok[[:space:]]+([^[:space:]]+) ]]; then
		for n in ${names[@]+"${names[@]}"}; do
			if [[ -z $filter ]] || grep -qE -- "$filter" <<<"$n"; then
				targets+=("${BASH_REMATCH[1]} $n")
			fi
		done
		names=()
	fi
done <<<"$listing"
if [[ ${#targets[@]} -eq 0 ]]; then
	echo "no fuzz targets${filter:+ match $filter}" >&2
	exit 1
fi
echo "${#targets[@]} targets, $fuzztime each; logs in $logdir" >&2

flags=(-run '^$' -fuzztime "$fuzztime")
[[ -z $parallel ]] || flags+=(-parallel "$parallel")
[[ -z $minimize ]] || flags+=(-fuzzminimizetime "$minimize")

results=()
failed=()
for t in "${targets[@]}"; do
	pkg=${t% *}
	name=${t#* }
	log="$logdir/${pkg##*/}.$name.log"
	echo "== $name ($pkg)" >&2
	status=ok
	if ! go test "${flags[@]}" -fuzz "^$name\$" "$pkg" >"$log" 2>&1; then
		status=FAIL
		grep -E 'Failing input written to|--- FAIL' "$log" >&2 || tail -n 20 "$log" >&2
		crasher=$(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$log" | tail -n 1)
		if [[ -n $crasher ]]; then
			dir=$(go list -f '{{.Dir}}' "$pkg")
			failed+=("$name ($pkg): crasher ${dir#"$PWD"/}/$crasher; log $log")
		else
			failed+=("$name ($pkg): see $log")
		fi
	fi
	# The last progress line holds the totals:
	# fuzz: elapsed: 1m0s, execs: 1234567 (20576/sec), new interesting: …
	last=$(grep -E '^fuzz: elapsed: [0-9hms.]+, execs: [0-9]+' "$log" | tail -n 1 || true)
	elapsed=- execs=- rate=-
	if [[ $last =~ elapsed:\ ([0-9hms.]+),\ execs:\ ([0-9]+) ]]; then
		elapsed=${BASH_REMATCH[1]}
		execs=${BASH_REMATCH[2]}
		s=$(seconds "$elapsed")
		if ((s > 0)); then
			rate=$((execs / s))
		fi
	fi
	results+=("$(printf '%-18s %-40s %8s %12s %10s  %s' "$name" "$pkg" "$elapsed" "$execs" "$rate" "$status")")
done

echo
printf '%-18s %-40s %8s %12s %10s  %s\n' target package elapsed execs execs/s result
printf '%s\n' "${results[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
	echo
	echo "failed (crashers stay in the package's testdata/fuzz/<target>/ as seed-corpus entries):"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
