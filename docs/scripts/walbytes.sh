#!/bin/bash
# What a gift writes to the WAL: pg_waldump over 6 s in the middle of a 16-s
# gift-hot run, bytes per transaction posted, by relation and record type.
# "Per transaction" counts the heap inserts into transactions in the window.
# usage: docs/scripts/walbytes.sh COINLEDGER_BINARY [CALLERS]
set -eu
bin=$1 callers=${2:-32} out=$(mktemp) recs=$(mktemp) rels=$(mktemp)
. "$(dirname "$0")/benchlib.sh"
start_bench "$bin" "$callers" 16s "$out"
sleep 3
bench_psql
from=$("${psql[@]}" -c "SELECT pg_current_wal_insert_lsn()")
sleep 6
to=$("${psql[@]}" -c "SELECT pg_current_wal_insert_lsn()")
"${psql[@]}" -F' ' -c "SELECT pg_relation_filenode(oid), relname FROM pg_class WHERE relnamespace = 'public'::regnamespace" >"$rels"
data=$("${psql[@]}" -c "SHOW data_directory")
waldump=$(ls /usr/lib/postgresql/*/bin/pg_waldump | tail -1)
# Reads the segments while the server still has them; the last record may be cut.
"${as_pg[@]}" "$waldump" -p "$data/pg_wal" -s "$from" -e "$to" >"$recs" 2>/dev/null || true
wait $bench_pid
grep -a '^requests' "$out"
awk 'NR == FNR { name[$1] = $2; next }
  { size = $0; sub(/.*tot\): */, "", size); sub(/,.*/, "", size); split(size, s, "/")
    desc = $0; sub(/.*desc: /, "", desc); split(desc, d, " ")
    rel = "-"
    if (match($0, /rel [0-9]+\/[0-9]+\/[0-9]+/)) { r = substr($0, RSTART, RLENGTH); sub(/.*\//, "", r); rel = (r in name) ? name[r] : r }
    key = rel " " $2 "/" d[1]; bytes[key] += s[2]; all += s[2]
    if (rel == "transactions" && $2 == "Heap" && d[1] ~ /^INSERT/) txs++ }
  END { printf "%d transactions, %.0f bytes of WAL each\n", txs, all / txs
        for (k in bytes) if (bytes[k] / txs >= 20) printf "%7.0f %5.1f%%  %s\n", bytes[k] / txs, 100 * bytes[k] / all, k }' "$rels" "$recs" | sort -rn
rm -f "$out" "$recs" "$rels"
