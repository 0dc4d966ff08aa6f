#!/usr/bin/env bash
# Archive sizes of arc against other archivers on real directory trees, at their everyday
# settings.
#
# Usage: benches/size.sh DIR [DIR...]
#
# For each DIR, one run of each writer, every archive holding DIR under its own name:
#   arc            `arc write -o OUT DIR` (defaults: zstd level 3, 4 MiB blocks)
#   arc 16M        `arc write --block-size 16M -o OUT DIR`
#   tar            GNU `tar --zstd -cf OUT` (zstd's default level, 3)
#   bsdtar         `bsdtar --zstd -cf OUT` (libarchive; level 3 too)
#   squashfs       `mksquashfs DIR OUT -comp zstd -Xcompression-level 3 -noappend` (if installed;
#                  128 KiB blocks, whole-file dedup, image padded to 4 KiB as by default)
#   7z             `7z a -mx3 -snl OUT DIR` (7z, 7zz or 7za, if installed; LZMA2; -snl stores
#                  symlinks as links, as the others do)
# and prints one row per DIR of a markdown table: the tree's regular files and their bytes,
# each archive's size in bytes and in MB (10^6 bytes), and arc's size relative to the smaller
# of the two tar archives (negative: arc is smaller). A second table gives each write's wall
# time: one run each, after a read of the tree to warm the page cache (arc, squashfs and 7z use
# every core; tar and bsdtar compress on one), so a rough guide, not a benchmark: use
# benches/compare.sh for timings. Markdown goes to stdout, progress to stderr.
#
# Environment:
#   ARC=path       the arc binary (default: `cargo build --release`, then target/release/arc)
#   SCRATCH=dir    where the archives go (default /dev/shm); each is deleted once measured, so
#                  it needs room for the largest one
set -euo pipefail

SCRATCH=${SCRATCH:-/dev/shm}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

die() {
    echo "size.sh: $*" >&2
    exit 2
}

[[ $# -ge 1 ]] || die "usage: benches/size.sh DIR [DIR...]"
for tool in tar bsdtar zstd find awk; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
for dir in "$@"; do
    [[ -d $dir ]] || die "$dir is not a directory"
done
tar --version | grep -q 'GNU tar' || die "tar must be GNU tar"
SQUASHFS=$(command -v mksquashfs || true)
SEVENZ=$(command -v 7zz || command -v 7z || command -v 7za || true)

# shellcheck source=benches/common.sh
source "$here/common.sh"
ARC=$(find_arc "$repo")
work=$(make_work "$SCRATCH" size)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# Runs a command, prints its wall time in seconds. Exit status 1 is a warning for arc, tar and
# bsdtar (a special file skipped, a file changed while read) and is let through; the
# command's output goes to stderr.
timed() {
    local start end rc=0
    start=$(date +%s.%N)
    "$@" >&2 || rc=$?
    end=$(date +%s.%N)
    ((rc <= 1)) || die "$* failed with exit status $rc"
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }'
}

# measure OUT COMMAND...: runs COMMAND, appends the size of OUT to sizes and its wall time to
# secs, and removes OUT.
measure() {
    local out=$1
    shift
    echo "-- $*" >&2
    secs+=("$(timed "$@")")
    sizes+=("$(stat -c %s "$out")")
    rm -f "$out"
}

mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e6 }'; }
cell() { echo "$1 ($(mb "$1"))"; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f%%", 100 * (a - b) / b }'; }

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
echo "## Archive sizes"
echo
echo "- cores (nproc): $(nproc); CPU: ${cpu:-unknown}; kernel: $(uname -sr)"
echo "- $("$ARC" --version) ($ARC$(git -C "$repo" rev-parse --short HEAD 2>/dev/null | sed 's/^/, commit /'))"
echo "- $(tar --version | head -n1); zstd $(zstd -V | grep -o 'v[0-9.]*' | head -n1); $(bsdtar --version | sed "s/ *$//")"
[[ -n $SQUASHFS ]] && echo "- $("$SQUASHFS" -version | head -n1)"
[[ -n $SEVENZ ]] && echo "- $("$SEVENZ" | grep -m1 -o '7-Zip[^:]*' | sed 's/ *$//')"
echo "- scratch: $SCRATCH ($(df --output=fstype "$SCRATCH" | tail -n1))"
echo
echo "Sizes in bytes (MB = 10^6 bytes). Files and bytes: the tree's regular files and the sum"
echo "of their sizes. \"vs tar\": arc's size relative to the smaller of tar and bsdtar."
echo

header="| tree | files | bytes | arc | arc 16M | tar --zstd | bsdtar --zstd"
rule="|---|---:|---:|---:|---:|---:|---:"
theader="| tree | arc | arc 16M | tar --zstd | bsdtar --zstd"
trule="|---|---:|---:|---:|---:|"
if [[ -n $SQUASHFS ]]; then
    header+=" | squashfs zstd 3"
    rule+="|---:"
    theader+=" | squashfs"
    trule+="---:|"
fi
if [[ -n $SEVENZ ]]; then
    header+=" | 7z -mx3"
    rule+="|---:"
    theader+=" | 7z"
    trule+="---:|"
fi
echo "$header | arc vs tar | arc 16M vs tar | arc write (s) | tar write (s) |"
echo "$rule|---:|---:|---:|---:|"
times=""

for arg in "$@"; do
    dir=$(realpath "$arg")
    parent=$(dirname "$dir")
    name=$(basename "$dir")
    echo "== $dir" >&2
    # Warm the page cache: read every file once. (GNU tar skips reading file data when the
    # archive is /dev/null, hence the pipe.)
    tar -cf - -C "$parent" "$name" 2>/dev/null | cat >/dev/null || true
    files=$(find "$dir" -type f | wc -l)
    bytes=$(find "$dir" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')

    sizes=() secs=()
    measure "$work/x.arc" "$ARC" write -q -o "$work/x.arc" "$dir"
    measure "$work/x16.arc" "$ARC" write -q --block-size 16M -o "$work/x16.arc" "$dir"
    measure "$work/x.tar.zst" tar --zstd -cf "$work/x.tar.zst" -C "$parent" "$name"
    measure "$work/xb.tar.zst" bsdtar --zstd -cf "$work/xb.tar.zst" -C "$parent" "$name"
    if [[ -n $SQUASHFS ]]; then
        measure "$work/x.sqfs" "$SQUASHFS" "$dir" "$work/x.sqfs" -comp zstd \
            -Xcompression-level 3 -noappend -quiet -no-progress
    fi
    if [[ -n $SEVENZ ]]; then
        # Run from the parent so that the archive holds NAME/..., as the others do.
        measure "$work/x.7z" bash -c 'cd "$1" && exec "$2" a -mx3 -snl -bd -bso0 -bsp0 "$3" "$4"' \
            _ "$parent" "$SEVENZ" "$work/x.7z" "$name"
    fi

    best_tar=$((sizes[2] < sizes[3] ? sizes[2] : sizes[3]))
    row="| $dir | $files | $(cell "$bytes")"
    trow="| $dir"
    for i in "${!sizes[@]}"; do
        row+=" | $(cell "${sizes[i]}")"
        trow+=" | ${secs[i]}"
    done
    echo "$row | $(pct "${sizes[0]}" "$best_tar") | $(pct "${sizes[1]}" "$best_tar") | ${secs[0]} | ${secs[2]} |"
    times+="$trow |"$'\n'
done

echo
echo "## Write wall time (s), one run each"
echo
echo "$theader |"
echo "$trule"
printf '%s' "$times"
