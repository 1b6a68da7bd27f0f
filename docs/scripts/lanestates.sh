#!/bin/bash
# Whether the two commit lanes' PostgreSQL backends move in step: 2,500
# samples of pg_stat_activity 3 ms apart during a gift-hot run; each sample
# classes every client backend (out: no transaction open; go: idle in the
# transaction, waiting for the Go side; wal: WAL flush or write; lock: a row
# lock; cpu: running; oth: any other wait). Prints each lane slot's share of
# every state and the joint shares of the two busy backends beside what they
# would be if the lanes were independent.
# usage: docs/scripts/lanestates.sh COINLEDGER_BINARY [CALLERS]
set -eu
bin=$1 callers=${2:-32} out=$(mktemp) samples=$(mktemp)
. "$(dirname "$0")/benchlib.sh"
start_bench "$bin" "$callers" 25s "$out"
sleep 2
bench_psql
bench_sample "SELECT string_agg(s, ' ') FROM (SELECT CASE
  WHEN state = 'idle' THEN 'out'
  WHEN state LIKE 'idle in%' THEN 'go'
  WHEN wait_event IN ('WALSync', 'WALWrite', 'WALInsert') THEN 'wal'
  WHEN wait_event_type = 'Lock' THEN 'lock'
  WHEN wait_event IS NULL THEN 'cpu'
  ELSE 'oth' END s FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) x" \
  2500 0.003 >"$samples"
wait $bench_pid
grep -a '^requests\|^batches' "$out"
# A sample with more than two backends in a transaction (a read outside the
# lanes) is left out; "out" fills the slots of lanes between transactions.
awk '{ n = 0; for (i = 1; i <= NF; i++) if ($i != "out") a[++n] = $i
       if (n > 2) { skipped++; next }
       while (n < 2) a[++n] = "out"
       if (a[1] > a[2]) { t = a[1]; a[1] = a[2]; a[2] = t }
       joint[a[1] "+" a[2]]++; one[a[1]]++; one[a[2]]++; total++ }
  END { printf "%d samples (%d left out)\neach lane slot:", total, skipped
        for (s in one) printf " %s %.1f%%", s, 50 * one[s] / total
        print "\nboth lanes: observed, if independent"
        for (j in joint) { split(j, p, "+"); e = one[p[1]] * one[p[2]] / (4 * total * total) * (p[1] == p[2] ? 1 : 2)
          printf "%6.1f%% %6.1f%%  %s\n", 100 * joint[j] / total, 100 * e, j | "sort -rn" } }' "$samples"
rm -f "$out" "$samples"
