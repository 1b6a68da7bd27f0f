#!/bin/bash
# In-run A/B of a code change: one 66-s gift-hot run of a prototype build
# that takes path B while the file FLAG exists and path A while it does not
# (it checks the file itself, e.g. every 50 ms). The file is created and
# removed every 2 s; a line "AB MODE UNIX_MS RATE" per block goes to OUT
# (MODE 1 is B), and abblocks.py compares each block with its neighbours.
# Environment given to this script reaches the build (e.g. COPY_AB=1).
# usage: docs/scripts/ab-flagfile.sh PROTOTYPE_BINARY FLAG OUT
set -eu
bin=$1 flag=$2 res=$3 out=$(mktemp)
here=$(dirname "$0")
. "$here/benchlib.sh"
rm -f "$flag"
start_bench "$bin" 32 66s "$out"
ab_blocks "$out" "$res" 'touch "$flag"' 'rm -f "$flag"'
rm -f "$out" "$flag"
python3 "$here/abblocks.py" "$res"
