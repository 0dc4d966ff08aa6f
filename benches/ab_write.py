#!/usr/bin/env python3
"""Write one tree with several arc builds and with `tar --zstd`, alternated round by round.

    benches/ab_write.py TREE ROUNDS ARC [ARC...]

Each round writes TREE once with every build given and once with GNU tar (`tar --zstd -cf`),
into /dev/shm, and prints the round's wall times; at the end, each build's median (min-max)
and its ratio to tar's time in the same round, median (min-max). Alternating in one run is
what makes builds comparable on a noisy machine: the ratio to tar of the same round cancels
most of the machine's changes of pace. Read TREE once before (the page cache) so that the
first round is not the only one that reads a disk.
"""
import os
import statistics
import subprocess
import sys
import time

if len(sys.argv) < 4:
    sys.exit(__doc__)
tree, rounds, builds = os.path.abspath(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
parent, name = os.path.dirname(tree), os.path.basename(tree)
out = "/dev/shm/ab-write.out"
times = {b: [] for b in builds + ["tar"]}
for r in range(rounds):
    for b in builds + ["tar"]:
        if os.path.exists(out):
            os.remove(out)
        command = ["tar", "--zstd", "-cf", out, "-C", parent, name] if b == "tar" else [b, "write", "-q", "-o", out, tree]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        times[b].append(time.perf_counter() - start)
    print(f"round {r + 1}: " + ", ".join(f"{b} {t[-1]:.3f} s" for b, t in times.items()), flush=True)
os.remove(out)
tar = times["tar"]
print(f"\n| build | median s (min-max) | / tar, per round: median (min-max) |\n|---|---|---|")
for b in builds:
    ratios = [a / t for a, t in zip(times[b], tar)]
    print(f"| {b} | {statistics.median(times[b]):.3f} ({min(times[b]):.3f}-{max(times[b]):.3f}) "
          f"| {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) |")
print(f"| tar --zstd | {statistics.median(tar):.3f} ({min(tar):.3f}-{max(tar):.3f}) | |")
