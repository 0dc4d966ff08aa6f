#!/usr/bin/env bash
# How arc and tar --zstd scale with the number of entries: trees of N small files.
#
# Usage: benches/scale.sh [N...]        (default: $NS, else 100000 250000 500000 1000000)
#
# For each N, generates a tree of N files of 0–200 bytes of text, FILES_PER_DIR to a directory,
# under SCRATCH (tmpfs), then times arc and `tar --zstd` writing, listing and extracting it,
# records peak RSS, archive sizes and the size of arc's index, and deletes it all before the
# next N. Markdown goes to stdout, progress to stderr.
#
# Environment:
#   ARC=path          the arc binary (default: `cargo build --release`, then target/release/arc)
#   RUNS=N            timed runs per command (default 3); the tables show the median time and
#                     the largest peak RSS
#   FILES_PER_DIR=n   default 1000
#   SCRATCH=dir       default /dev/shm. Needs about 10 KiB per file: on tmpfs every non-empty
#                     file takes a 4 KiB page, and the tree exists twice during a read.
#
# docs/BENCHMARKS.md explains every column.
set -euo pipefail

RUNS=${RUNS:-3}
FILES_PER_DIR=${FILES_PER_DIR:-1000}
SCRATCH=${SCRATCH:-/dev/shm}
if [[ $# -gt 0 ]]; then
    sizes=("$@")
else
    read -r -a sizes <<<"${NS:-100000 250000 500000 1000000}"
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

die() {
    echo "scale.sh: $*" >&2
    exit 2
}

for tool in tar zstd python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
for value in "$RUNS" "$FILES_PER_DIR" "${sizes[@]}"; do
    [[ $value =~ ^[1-9][0-9]*$ ]] || die "RUNS, FILES_PER_DIR and N must be positive integers, not '$value'"
done

# shellcheck source=benches/common.sh
source "$here/common.sh"
ARC=$(find_arc "$repo")
work=$(make_work "$SCRATCH" scale)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# Writes N files of 0–200 bytes, FILES_PER_DIR per directory, sliced from a block of
# pseudo-random words so that the text compresses like text (deterministic: seed 1).
generate() {
    python3 - "$1" "$2" "$FILES_PER_DIR" <<'EOF'
import os, random, sys

root, n, per_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
         for _ in range(2000)]
text = " ".join(rng.choice(words[:100] if rng.random() < 0.75 else words)
                for _ in range(200_000)).encode()
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
for i in range(n):
    if i % per_dir == 0:
        d = os.path.join(root, f"d{i // per_dir:05}")
        os.makedirs(d)
    size = rng.randint(0, 200)
    start = rng.randrange(len(text) - size)
    fd = os.open(os.path.join(d, f"f{i % per_dir:05}.txt"), flags, 0o644)
    os.write(fd, text[start:start + size])
    os.close(fd)
EOF
}

# Runs a shell command RUNS times, each after PREPARE (untimed); prints the median wall time
# in seconds and the largest peak RSS in KiB. The RSS is GNU time's %M: the largest of the
# processes the command ran (tar's zstd child included), not their sum. (Not wait4 from
# Python: exec records the forking parent's peak, so Python's own ~14 MiB would be the floor.)
measure() {
    python3 - "$RUNS" "$1" "$2" "$work/rss" <<'EOF'
import statistics, subprocess, sys, time

runs, prepare, command, rss_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
times, peak = [], 0
for _ in range(runs):
    if prepare:
        subprocess.run(["bash", "-c", prepare], check=True)
    start = time.perf_counter()
    status = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, "bash", "-c", command],
                            stdout=subprocess.DEVNULL).returncode
    times.append(time.perf_counter() - start)
    if status != 0:
        sys.exit(f"scale.sh: `{command}` failed with status {status}")
    with open(rss_file) as f:
        peak = max(peak, int(f.read().split()[-1]))
print(f"{statistics.median(times):.3f} {peak}")
EOF
}

# The compressed and raw index lengths: the first two little-endian u64 of the 32-byte
# trailer (docs/FORMAT.md §5).
index_lengths() {
    python3 - "$1" <<'EOF'
import struct, sys

with open(sys.argv[1], "rb") as f:
    f.seek(-32, 2)
    index_len, raw_len = struct.unpack("<QQ", f.read(16))
print(index_len, raw_len)
EOF
}

q() { printf '%q' "$1"; }

results=$work/results
: >"$results"
for n in "${sizes[@]}"; do
    avail=$(df --output=avail -k "$SCRATCH" | tail -n1)
    ((avail > n * 10)) || die "N=$n needs about $((n * 10 / 1024)) MiB free in $SCRATCH; $((avail / 1024)) MiB left"

    w=$work/$n
    mkdir -p "$w"
    tree=$w/tree dest=$w/dest arc_out=$w/x.arc tzst=$w/x.tar.zst
    qarc=$(q "$ARC") qw=$(q "$w") qtree=$(q "$tree") qdest=$(q "$dest")
    qarc_out=$(q "$arc_out") qtzst=$(q "$tzst")
    fresh="rm -rf $qdest && mkdir $qdest"

    echo "== N=$n: generating" >&2
    generate "$tree" "$n"
    entries=$(find "$tree" | wc -l)

    echo "== N=$n: measuring" >&2
    # Each measurement runs in the foreground (not in a `< <(...)` process substitution), so
    # that an interrupted script waits for it and then removes everything it wrote.
    m=$(measure "rm -f $qarc_out" "$qarc write -q -o $qarc_out $qtree")
    read -r arc_write arc_write_rss <<<"$m"
    m=$(measure "rm -f $qtzst" "tar --zstd -cf $qtzst -C $qw tree")
    read -r tar_write tar_write_rss <<<"$m"
    m=$(measure "" "$qarc list $qarc_out")
    read -r arc_list arc_list_rss <<<"$m"
    m=$(measure "" "tar --zstd -tf $qtzst")
    read -r tar_list _ <<<"$m"
    m=$(measure "" "$qarc list $qarc_out tree/d00000/f00000.txt")
    read -r arc_load _ <<<"$m"
    m=$(measure "$fresh" "$qarc read -q $qarc_out -C $qdest")
    read -r arc_read arc_read_rss <<<"$m"
    m=$(measure "$fresh" "tar --zstd -xf $qtzst -C $qdest")
    read -r tar_read tar_read_rss <<<"$m"
    m=$(index_lengths "$arc_out")
    read -r index_len index_raw <<<"$m"
    echo "$n $entries $arc_write $tar_write $arc_list $tar_list $arc_load $arc_read $tar_read" \
        "$arc_write_rss $tar_write_rss $arc_read_rss $tar_read_rss $arc_list_rss" \
        "$(stat -c %s "$arc_out") $(stat -c %s "$tzst") $index_len $index_raw" >>"$results"
    rm -rf "$w"
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
echo "## Machine"
echo
echo "- cores (nproc): $(nproc); CPU: ${cpu:-unknown}"
echo "- RAM: $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); kernel: $(uname -sr)"
echo "- $(tar --version | head -n1); zstd $(zstd -V | grep -o 'v[0-9.]*' | head -n1)"
echo "- $("$ARC" --version) ($ARC$(git -C "$repo" rev-parse --short HEAD 2>/dev/null | sed 's/^/, commit /'))"
echo "- scratch: $SCRATCH ($(df --output=fstype "$SCRATCH" | tail -n1)); $FILES_PER_DIR files per directory; median of $RUNS runs"
echo
python3 - "$results" <<'EOF'
import sys

rows = [line.split() for line in open(sys.argv[1])]
mib = lambda kib: f"{int(kib) / 1024:.1f}"

print("## Time (median seconds)\n")
print("| N files | entries | write arc | write tar | list arc | list tar | index load (arc list PATH) "
      "| read arc | read tar |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print("| " + " | ".join(r[0:9]) + " |")

print("\n## Memory and size\n")
print("| N files | write RSS arc (MiB) | write RSS tar | read RSS arc | read RSS tar | list RSS arc "
      "| arc bytes | tar.zst bytes | arc/tar | index bytes | index bytes/entry | raw index bytes/entry |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    n, entries = r[0], int(r[1])
    arc, tar, index, raw = (int(x) for x in r[14:18])
    print(f"| {n} | " + " | ".join(mib(x) for x in r[9:14])
          + f" | {arc} | {tar} | {arc / tar:.2f} | {index} | {index / entries:.2f} | {raw / entries:.2f} |")
print()
EOF
