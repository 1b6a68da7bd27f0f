#!/bin/bash
# Where the commit lanes' PostgreSQL backends spend a gift-hot run: 1,200
# samples of pg_stat_activity 5 ms apart (non-idle client backends only),
# counted by state | wait event type | wait event ("CPU": no wait event); then
# 1,200 samples of the balance rows whose row locks backends are queued on
# (tuple locks), by account name with run and viewer numbers folded. Both
# rounds fall inside the 30-s run (each takes 8-10 s here).
# usage: docs/scripts/waits.sh COINLEDGER_BINARY [CALLERS]
set -eu
bin=$1 callers=${2:-32} out=$(mktemp)
. "$(dirname "$0")/benchlib.sh"
start_bench "$bin" "$callers" 30s "$out"
sleep 2
bench_psql
sample() { # SQL, count
  bench_sample "$1" "$2" 0.005 | sed 's/bench-[a-z0-9]*-v[0-9]*/RUN-vN/' | sort | uniq -c | sort -rn | head -12
}
echo "lane backends: samples by state | wait event type | wait event"
sample "SELECT state, coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '-')
  FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle'" 1200
echo "row locks queued on, by account"
sample "SELECT a.name FROM pg_locks l JOIN balances b ON b.ctid = ('(' || l.page || ',' || l.tuple || ')')::tid
  JOIN accounts a ON a.id = b.account_id
  WHERE l.locktype = 'tuple' AND l.relation = 'balances'::regclass AND l.pid <> pg_backend_pid()" 1200
wait $bench_pid
grep -a '^requests\|^batches' "$out"
rm -f "$out"
