#!/usr/bin/env python3
"""In-run A/B: reads lines "AB MODE UNIX_MS RATE" (MODE 1 is B), written by a
build that switches a behaviour every few seconds inside one bench run (the
spec-proto branch's SPEC_AB does), or by ab-pgsetting.sh. Drops the blocks before and after the load
and the first and last of it, then prints, for each remaining block, its rate
against the mean of its neighbours (B/A, so a B block's own ratio and an A
block's inverse), and their median. A drift slower than a block cancels.
usage: docs/scripts/abblocks.py BENCH_OUTPUT..."""
import statistics
import sys

for path in sys.argv[1:]:
    blocks = [(int(f[1]), float(f[3])) for f in (l.split() for l in open(path)) if f and f[0] == "AB"]
    first = next(i for i, (_, rate) in enumerate(blocks) if rate > 1000) + 1
    last = next((i for i in range(first, len(blocks)) if blocks[i][1] < 1000), len(blocks)) - 1
    load = blocks[first:last]
    ratios = []
    for i in range(1, len(load) - 1):
        mode, rate = load[i]
        around = (load[i - 1][1] + load[i + 1][1]) / 2
        ratios.append(rate / around if mode == 1 else around / rate)
    print(f"{path}: {len(ratios)} blocks, B/A median {statistics.median(ratios):.3f} mean {statistics.mean(ratios):.3f}:",
          " ".join(f"{r:.2f}" for r in ratios))
