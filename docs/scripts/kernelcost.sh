#!/bin/bash
# System calls, page faults and context switches a gift, for the coinledger
# process (load generator and server) and PostgreSQL, counted by perf
# (Debian's linux-perf) over the same 5 s inside a 15-s gift-hot run. At the
# prices `go run ./docs/scripts/probe` measures, they are what a gift's kernel
# entries cost on this machine.
# usage: docs/scripts/kernelcost.sh COINLEDGER_BINARY [CALLERS]
set -eu
bin=$1 callers=${2:-32} out=$(mktemp) go_stat=$(mktemp) pg_stat=$(mktemp)
. "$(dirname "$0")/benchlib.sh"
start_bench "$bin" "$callers" 15s "$out"
sleep 1
events=raw_syscalls:sys_enter,page-faults,context-switches
n1=$(bench_done "$out")
perf stat -x, -e $events -p "$bench_pid" -o "$go_stat" -- sleep 5 &
go_perf=$!
perf stat -x, -e $events -p "$(pgrep -x postgres | paste -sd,)" -o "$pg_stat" -- sleep 5 &
pg_perf=$!
wait $go_perf $pg_perf
n=$(($(bench_done "$out") - n1))
wait $bench_pid
per_gift() { awk -F, -v n="$n" -v who="$1" '$3 ~ /sys_enter|page-faults|context-switches/ {
  split($3, e, ":"); name = e[length(e)]; printf "%s%s %s=%.2f", (k++ ? "" : who), (k > 1 ? "," : ""), name, $1 / n } END { print "" }' "$2"; }
echo "gifts in the window: $n (bench progress lines, about 5 s)"
per_gift "coinledger:" "$go_stat"
per_gift "postgres:  " "$pg_stat"
rm -f "$out" "$go_stat" "$pg_stat"
