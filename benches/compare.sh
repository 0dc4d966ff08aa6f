#!/usr/bin/env bash
# Whole-tool comparison of arc against GNU tar with zstd, on real directory trees.
#
# Usage: benches/compare.sh DIR [DIR...]
#
# For each DIR: write, read into tmpfs, list, and extract one file, timed with hyperfine
# (1 warm-up run, then RUNS runs; the table shows medians); archive sizes; and the peak RSS of
# one write and one read of each tool. Markdown goes to stdout, hyperfine's progress to stderr,
# so `benches/compare.sh /usr/share/doc > results.md` keeps just the tables.
#
# Environment:
#   ARC=path       the arc binary (default: `cargo build --release`, then target/release/arc)
#   RUNS=N         timed runs per command (default 5)
#   JSON_DIR=dir   keep hyperfine's JSON exports there (default: a temp dir, removed on exit)
#   SCRATCH=dir    where archives and extractions go (default /dev/shm, so that the disk is
#                  not what is measured)
#
# docs/BENCHMARKS.md explains every row.
set -euo pipefail

RUNS=${RUNS:-5}
SCRATCH=${SCRATCH:-/dev/shm}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

die() {
    echo "compare.sh: $*" >&2
    exit 2
}

[[ $# -ge 1 ]] || die "usage: benches/compare.sh DIR [DIR...]"
for tool in hyperfine tar zstd python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"

# shellcheck source=benches/common.sh
source "$here/common.sh"
ARC=$(find_arc "$repo")
work=$(make_work "$SCRATCH" compare)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
json_dir=${JSON_DIR:-$work/json}
mkdir -p "$json_dir"

q() { printf '%q' "$1"; }

machine() {
    local cpu mem
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
    mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    echo "## Machine"
    echo
    echo "- cores (nproc): $(nproc); CPU: ${cpu:-unknown}"
    echo "- RAM: $mem; kernel: $(uname -sr)"
    echo "- $(tar --version | head -n1); zstd $(zstd -V | grep -o 'v[0-9.]*' | head -n1); $(hyperfine --version)"
    echo "- $("$ARC" --version) ($ARC$(git -C "$repo" rev-parse --short HEAD 2>/dev/null | sed 's/^/, commit /'))"
    echo "- scratch: $SCRATCH ($(df --output=fstype "$SCRATCH" | tail -n1)); runs: 1 warm-up + $RUNS"
    echo
}

# Peak RSS in KiB of one run of a shell command: GNU time reports the largest of the process
# and the children it waited for (tar's zstd child included), not their sum.
peak_rss() {
    local out=$work/rss
    /usr/bin/time -f %M -o "$out" bash -c "$1" >/dev/null
    tail -n1 "$out"
}

# hyperfine with the common settings; its report goes to stderr.
bench() {
    local json=$1
    shift
    hyperfine --warmup 1 --runs "$RUNS" --export-json "$json" "$@" >&2
}

compare() {
    local dir parent name w n
    dir=$(realpath "$1")
    [[ -d $dir ]] || die "$1 is not a directory"
    parent=$(dirname "$dir")
    name=$(basename "$dir")
    n=$2
    w=$work/$n
    mkdir -p "$w"
    local arc_out=$w/x.arc tzst=$w/x.tar.zst tmt=$w/x-mt.tar.zst dest=$w/dest
    local qarc qdir qparent qname qarc_out qtzst qtmt qdest
    qarc=$(q "$ARC") qdir=$(q "$dir") qparent=$(q "$parent") qname=$(q "$name")
    qarc_out=$(q "$arc_out") qtzst=$(q "$tzst") qtmt=$(q "$tmt") qdest=$(q "$dest")
    local fresh="rm -rf $qdest && mkdir $qdest"

    echo "== $dir" >&2
    # Warm the page cache: read every file once. (GNU tar skips reading file data when the
    # archive is /dev/null, hence the pipe.)
    tar -cf - -C "$parent" "$name" 2>/dev/null | cat >/dev/null || true

    local write_arc="$qarc write -q -o $qarc_out $qdir"
    local write_tar="tar --zstd -cf $qtzst -C $qparent $qname"
    local write_tmt="tar -I 'zstd -T0' -cf $qtmt -C $qparent $qname"
    bench "$json_dir/$n-write.json" \
        --prepare "rm -f $qarc_out" --prepare "rm -f $qtzst" --prepare "rm -f $qtmt" \
        -n arc "$write_arc" -n "tar --zstd" "$write_tar" -n "tar -I 'zstd -T0'" "$write_tmt"

    local read_arc="$qarc read -q $qarc_out -C $qdest"
    local read_tar="tar --zstd -xf $qtzst -C $qdest"
    local read_tmt="tar -I 'zstd -T0' -xf $qtmt -C $qdest"
    bench "$json_dir/$n-read.json" --prepare "$fresh" \
        -n arc "$read_arc" -n "tar --zstd" "$read_tar" -n "tar -I 'zstd -T0'" "$read_tmt"

    bench "$json_dir/$n-list.json" \
        -n arc "$qarc list $qarc_out" -n "tar --zstd" "tar --zstd -tf $qtzst" \
        -n "tar -I 'zstd -T0'" "tar -I 'zstd -T0' -tf $qtmt"

    # One regular file from the middle of the listing. `arc list` ends directories with `/`
    # and escapes unusual names; neither passes the -f test, so both are skipped.
    local paths=() path="" i
    mapfile -t paths < <("$ARC" list "$arc_out")
    for ((i = ${#paths[@]} / 2; i < ${#paths[@]}; i++)); do
        if [[ -f $parent/${paths[i]} && ! -L $parent/${paths[i]} ]]; then
            path=${paths[i]}
            break
        fi
    done
    local one_json=""
    if [[ -n $path ]]; then
        local qpath
        qpath=$(q "$path")
        one_json=$json_dir/$n-one.json
        bench "$one_json" --prepare "$fresh" \
            -n arc "$qarc read -q $qarc_out -C $qdest $qpath" \
            -n "tar --zstd" "tar --zstd -xf $qtzst -C $qdest $qpath" \
            -n "tar -I 'zstd -T0'" "tar -I 'zstd -T0' -xf $qtmt -C $qdest $qpath"
    else
        echo "compare.sh: no regular file in the second half of $dir; skipping the one-file row" >&2
    fi

    local rss=() cmd
    for cmd in "$write_arc" "$write_tar" "$write_tmt"; do
        rss+=("$(peak_rss "$cmd")")
    done
    for cmd in "$read_arc" "$read_tar" "$read_tmt"; do
        bash -c "$fresh"
        rss+=("$(peak_rss "$cmd")")
    done
    rm -rf "$dest"

    python3 - "$dir" "$(du -sb "$dir" | cut -f1)" "${#paths[@]}" "$path" "$json_dir/$n" "$one_json" \
        "$(stat -c %s "$arc_out")" "$(stat -c %s "$tzst")" "$(stat -c %s "$tmt")" "${rss[@]}" <<'EOF'
import json, sys

(dir_, input_bytes, entries, path, prefix, one_json,
 s_arc, s_tar, s_tmt, *rss) = sys.argv[1:]

def medians(file):
    with open(file) as f:
        return [r["median"] for r in json.load(f)["results"]]

def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"

def row(label, values, fmt):
    print(f"| {label} | " + " | ".join(fmt(v) for v in values) + f" | {ratio(values[0], values[1])} |")

seconds = lambda v: f"{v:.3f}"
print(f"## {dir_}\n")
print(f"{int(input_bytes) / 2**20:.1f} MiB in {entries} entries (`du -sb`, `arc list | wc -l`).\n")
print("| operation | arc (median s) | tar --zstd | tar -I 'zstd -T0' | arc/tar ratio |")
print("|---|---:|---:|---:|---:|")
row("write", medians(f"{prefix}-write.json"), seconds)
row("read into tmpfs", medians(f"{prefix}-read.json"), seconds)
row("list", medians(f"{prefix}-list.json"), seconds)
if one_json:
    row(f"one file (`{path}`)", medians(one_json), seconds)
row("archive size (bytes)", [int(s_arc), int(s_tar), int(s_tmt)], str)
mib = lambda kib: f"{kib / 1024:.1f}"
row("write peak RSS (MiB)", [int(x) for x in rss[0:3]], mib)
row("read peak RSS (MiB)", [int(x) for x in rss[3:6]], mib)
print()
EOF
    rm -rf "$w"
}

machine
n=0
for dir in "$@"; do
    n=$((n + 1))
    compare "$dir" "$n"
done
