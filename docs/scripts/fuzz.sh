#!/usr/bin/env bash
# fuzz.sh PACKAGE TARGET FUZZTIME: go test -fuzz for one target. Go 1.26's
# fuzz coordinator can fail a target with a bare "context deadline exceeded"
# as -fuzztime expires (golang/go#75804, fixed in Go 1.27); such a run wrote
# no failing input, so it is run once more. Any other failure fails.
# Each input that widens coverage is minimized before fuzzing goes on, for
# up to -fuzzminimizetime (60 s by default, golang/go#48820): in a 20-s run
# one such stall took FuzzParseCursor's last 18 s (119,664 executions
# against 582,432 with 3 s), so minimizing stops after FUZZMINIMIZETIME (3s).
set -uo pipefail
pkg=$1 target=$2 fuzztime=$3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for attempt in 1 2; do
	"${GO:-go}" test "$pkg" -run '^$' -fuzz "$target" -fuzztime "$fuzztime" -fuzzminimizetime "${FUZZMINIMIZETIME:-3s}" 2>&1 | tee "$log"
	status=${PIPESTATUS[0]}
	if [ "$status" -eq 0 ]; then
		exit 0
	fi
	if [ "$attempt" -eq 1 ] && grep -q 'context deadline exceeded' "$log" &&
		! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
		echo "fuzz.sh: $target: the fuzz coordinator's deadline race (golang/go#75804), no failing input; running it again" >&2
		continue
	fi
	exit "$status"
done
