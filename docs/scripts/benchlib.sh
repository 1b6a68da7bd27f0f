# Sourced by the scripts here. The bench starts its own PostgreSQL, which runs
# as the postgres user when the bench runs as root.

# start_bench BINARY CALLERS DURATION OUTFILE [BENCH FLAGS...] starts a
# gift-hot run in the background, sets bench_pid and returns once its load
# has begun.
start_bench() {
  local bin=$1 callers=$2 duration=$3 out=$4
  shift 4
  "$bin" bench -workload gift-hot -c "$callers" -d "$duration" --log-level warn "$@" >"$out" 2>&1 &
  bench_pid=$!
  until grep -aq 'gift-hot: *1\.[0-9]s' "$out" 2>/dev/null; do sleep 0.2; done
}

# proc_sum FIELDS PID... prints the sum of /proc/PID/stat's FIELDS (cut's
# field list, e.g. 14,15) over the processes; one that has exited counts 0.
proc_sum() {
  local fields=$1 t=0 v
  shift
  for p in "$@"; do
    for v in $(cut -d' ' -f"$fields" "/proc/$p/stat" 2>/dev/null); do t=$((t + v)); done
  done
  echo $t
}

# bench_done OUTFILE prints how many requests the run writing OUTFILE has
# had acknowledged so far.
bench_done() {
  grep -a 'gift-hot: ' "$1" | tail -1 | grep -o '[0-9]* ok' | grep -o '[0-9]*'
}

# bench_psql sets the arrays as_pg (run as the server's user) and psql (a
# superuser psql on the newest bench's database, unaligned, quiet).
bench_psql() {
  local sock
  sock=$(dirname "$(ls -t /tmp/coinledger-pg-*/.s.PGSQL.5432 | head -1)")
  as_pg=()
  if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
  psql=("${as_pg[@]}" psql -U coinledger -h "$sock" -p 5432 -d coinledger -XAtq)
}

# bench_sample SQL COUNT PAUSE runs SQL (after bench_psql) COUNT times, PAUSE
# seconds apart, printing its non-empty output lines.
bench_sample() {
  for _ in $(seq "$2"); do echo "$1; SELECT pg_sleep($3);"; done | "${psql[@]}" | grep -v '^$'
}

# bench_apply_sql SQL runs SQL on the newest bench's database as a superuser,
# stopping at the first error. DDL can deadlock with the lanes and then
# silently not apply; give it a lock_timeout in SQL and it is retried here
# until it takes (50 tries), or the bench is stopped and the script fails.
bench_apply_sql() {
  bench_psql
  local tries=0
  until echo "$1" | "${psql[@]}" -v ON_ERROR_STOP=1 >/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -ge 50 ]; then echo "the SQL never applied" >&2; kill "$bench_pid"; exit 1; fi
    sleep 0.1
  done
}

# ab_blocks BENCH_OUT RES B_CMD A_CMD: 31 blocks of 2 s of the running bench,
# one line "AB MODE UNIX_MS RATE" each in RES (MODE 1 is B), running B_CMD
# or A_CMD (evaluated) between blocks to switch; then waits for the bench and
# appends its summary.
ab_blocks() {
  local out=$1 res=$2 cmd_b=$3 cmd_a=$4 mode=0 n0 t0
  : >"$res"
  for _ in $(seq 31); do
    n0=$(bench_done "$out") t0=$(date +%s%3N)
    sleep 2
    echo "AB $mode $t0 $((($(bench_done "$out") - n0) / 2))" >>"$res"
    mode=$((1 - mode))
    if [ $mode = 1 ]; then eval "$cmd_b"; else eval "$cmd_a"; fi
  done
  wait "$bench_pid" || true
  grep -a '^requests\|^acknowledged\|^verify\|^cpu' "$out" >>"$res"
}
