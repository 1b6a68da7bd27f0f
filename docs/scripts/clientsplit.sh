#!/bin/bash
# What the load generator costs: runs `serve` and `bench --addr` as separate
# processes (gift-hot, 32 callers, 25 s) and prints the CPU a gift of the
# load generator, the server and PostgreSQL over 15 s of the load, and the
# load generator's share of it: what the server would have back with the
# load generator on CPUs of its own.
# usage: docs/scripts/clientsplit.sh COINLEDGER_BINARY
set -eu
bin=$1
d=$(mktemp -d); chmod 755 $d
printf 'ops iap,gifting,creator-portal,finance,admin,treasury %s\n' "$(openssl rand -hex 24)" > $d/tokens
$bin serve --tokens-file $d/tokens --data-dir $d/pg --listen 127.0.0.1:7171 --metrics-listen "" --log-level warn > $d/serve.log 2>&1 &
spid=$!
until grep -q 'serving gRPC' $d/serve.log 2>/dev/null; do sleep 0.2; done
out=$d/bench.out
$bin bench --addr 127.0.0.1:7171 --token $(cut -d' ' -f3 $d/tokens) -workload gift-hot -c 32 -d 25s --log-level warn > $out 2>&1 &
bpid=$!
until grep -aq 'gift-hot: *2\.[0-9]s' $out 2>/dev/null; do sleep 0.2; done
. "$(dirname "$0")/benchlib.sh"
pgs() { pgrep -x postgres | tr '\n' ' '; }
c1=$(proc_sum 14,15 $bpid) s1=$(proc_sum 14,15 $spid) p1=$(proc_sum 14,15 $(pgs)) n1=$(bench_done $out)
sleep 15
c2=$(proc_sum 14,15 $bpid) s2=$(proc_sum 14,15 $spid) p2=$(proc_sum 14,15 $(pgs)) n2=$(bench_done $out)
wait $bpid || true
hz=$(getconf CLK_TCK)
awk -v hz=$hz -v c=$((c2-c1)) -v s=$((s2-s1)) -v p=$((p2-p1)) -v n=$((n2-n1)) 'BEGIN { t=c+s+p; printf "%d/s  client %.0f us  server %.0f us  postgres %.0f us a gift; client %.1f%% of the busy CPU\n", n/15, c*1e6/hz/n, s*1e6/hz/n, p*1e6/hz/n, 100*c/t }'
grep -a "^requests\|^latency\|^acknowledged\|^verify" $out
kill $spid; wait $spid || true
rm -rf $d
