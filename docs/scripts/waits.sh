#!/bin/bash
# Where the commit lanes' PostgreSQL backends spend a gift-hot run: 1,200
# samples of pg_stat_activity 5 ms apart (non-idle client backends only),
# counted by state | wait event type | wait event ("CPU": no wait event); then
# 1,200 samples of the balance rows whose row locks backends are queued on
# (tuple locks), by account name with run and viewer numbers folded. Both
# rounds fall inside the 30-s run (each takes 8-10 s here).
# usage: docs/scripts/waits.sh COINLEDGER_BINARY [CALLERS]
# PostgreSQL runs as the postgres user when the bench runs as root; psql is run as it.
set -eu
bin=$1 callers=${2:-32} out=$(mktemp)
"$bin" bench -workload gift-hot -c "$callers" -d 30s --log-level warn >"$out" 2>&1 &
pid=$!
until grep -aq 'gift-hot: *1\.[0-9]s' "$out" 2>/dev/null; do sleep 0.2; done
sleep 2
sock=$(dirname "$(ls -t /tmp/coinledger-pg-*/.s.PGSQL.5432 | head -1)")
psql=(psql -U coinledger -h "$sock" -p 5432 -d coinledger -XAtq)
if [ "$(id -u)" = 0 ]; then psql=(runuser -u postgres -- "${psql[@]}"); fi
sample() { # SQL, count
  for _ in $(seq "$2"); do echo "$1; SELECT pg_sleep(0.005);"; done | "${psql[@]}" | grep -v '^$' |
    sed 's/bench-[a-z0-9]*-v[0-9]*/RUN-vN/' | sort | uniq -c | sort -rn | head -12
}
echo "lane backends: samples by state | wait event type | wait event"
sample "SELECT state, coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '-')
  FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle'" 1200
echo "row locks queued on, by account"
sample "SELECT a.name FROM pg_locks l JOIN balances b ON b.ctid = ('(' || l.page || ',' || l.tuple || ')')::tid
  JOIN accounts a ON a.id = b.account_id
  WHERE l.locktype = 'tuple' AND l.relation = 'balances'::regclass AND l.pid <> pg_backend_pid()" 1200
wait $pid
grep -a '^requests\|^batches' "$out"
rm -f "$out"
