#!/usr/bin/env bash
# What arc's salvage recovers from a cut archive, against GNU tar --zstd cut at the same place.
#
# Usage: benches/salvage.sh [TREE]      (default: /root/.rustup)
#
# Writes TREE once with `arc write` and once with `tar --zstd` (both at zstd level 3), then for
# CUTS fractions f (uniform in (0.02, 0.98), from a fixed seed, sorted) keeps the first
# floor(f * length) bytes of each archive, as a transfer or a full disk would, and extracts
# them: `arc read --salvage` (status 2 on a damaged archive, as expected) and `tar --zstd -x`
# (its failure at the cut is ignored; the file it was writing is left half-written). It counts
# the regular files each wrote that are byte-identical to TREE's (by hash), and the arc files
# that differ, which must be none. Independently of arc's code, it parses the uncut archive's
# index (docs/FORMAT.md §4) to find the non-empty regular files whose stored bytes all lie in
# blocks whose frames end at or before the cut, and checks that arc recovered every one of them
# intact. Markdown goes to stdout, progress to stderr. Exit status 1 if an arc file differs
# or a file wholly before a cut was not recovered; 2 if the script could not run.
#
# Environment:
#   ARC=path       the arc binary (default: `cargo build --release`, then target/release/arc)
#   CUTS=N         how many cuts (default 10)
#   SEED=N         seed of the cut fractions (default 1)
#   SCRATCH=dir    where archives and extractions go (default /dev/shm). Needs about twice
#                  TREE's size plus both archives twice: the two extractions of one cut exist
#                  together, and are removed before the next cut.
set -euo pipefail

CUTS=${CUTS:-10}
SEED=${SEED:-1}
SCRATCH=${SCRATCH:-/dev/shm}
[[ $# -le 1 ]] || {
    echo "usage: benches/salvage.sh [TREE]" >&2
    exit 2
}
TREE=${1:-/root/.rustup}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

die() {
    echo "salvage.sh: $*" >&2
    exit 2
}

for tool in tar zstd python3 head; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
for value in "$CUTS" "$SEED"; do
    [[ $value =~ ^[1-9][0-9]*$ ]] || die "CUTS and SEED must be positive integers, not '$value'"
done
[[ -d $TREE ]] || die "$TREE is not a directory"
TREE=$(realpath "$TREE")
[[ $TREE != / ]] || die "TREE cannot be /"
parent=$(dirname "$TREE") base=$(basename "$TREE")

# shellcheck source=benches/common.sh
source "$here/common.sh"
ARC=$(find_arc "$repo")
work=$(make_work "$SCRATCH" salvage)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

arc_out=$work/a.arc tzst=$work/t.tar.zst
echo "== writing $TREE with arc and with tar --zstd" >&2
"$ARC" write -q -o "$arc_out" "$TREE"
tar -C "$parent" --zstd -cf "$tzst" "$base"
arc_len=$(stat -c %s "$arc_out") tar_len=$(stat -c %s "$tzst")

tree_kib=$(du -sk "$TREE" | cut -f1)
need=$((2 * tree_kib + 2 * (arc_len + tar_len) / 1024))
avail=$(df --output=avail -k "$SCRATCH" | tail -n1)
((avail > need)) || die "needs about $((need / 1024)) MiB free in $SCRATCH; $((avail / 1024)) MiB left"

# How both passes hash a file (Python, put before each of their scripts).
DIGEST_PY='import hashlib
def digest(path):
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()
'

# Hashes every regular file of TREE, and reads the uncut arc archive's index (docs/FORMAT.md
# §1, §4, §5) to find, for every non-empty regular file, where the frame of the last block
# holding its stored bytes ends. Frames end in increasing order, so the file is wholly before
# a cut at c exactly when that end is <= c. Pickles both for `count`; prints a summary.
prepare() {
    python3 - "$TREE" "$arc_out" "$work/facts.pickle" < <(printf '%s\n' "$DIGEST_PY"; cat <<'EOF'
import bisect, hashlib, os, pickle, stat, struct, subprocess, sys

tree, archive, out = (os.fsencode(a) for a in sys.argv[1:4])
parent, base = os.path.split(tree)

# Source files by path relative to TREE's parent, as both tools store them: (size, hash).
source = {}
for d, _, files in os.walk(tree):
    for name in files:
        p = os.path.join(d, name)
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            source[os.path.relpath(p, parent)] = (st.st_size, digest(p))

def cbor(buf, pos=0):
    """The CBOR item at pos, and where it ends: definite maps, byte and text strings, uints."""
    head = buf[pos]
    major, info = head >> 5, head & 31
    pos += 1
    if info < 24:
        n = info
    elif info <= 27:
        size = 1 << (info - 24)
        n = int.from_bytes(buf[pos:pos + size], "big")
        pos += size
    else:
        sys.exit(f"salvage.sh: CBOR item {head:#x} at {pos - 1} is not definite")
    if major == 0:
        return n, pos
    if major in (2, 3):
        value = buf[pos:pos + n]
        return (value.decode() if major == 3 else value), pos + n
    if major == 5:
        value = {}
        for _ in range(n):
            key, pos = cbor(buf, pos)
            value[key], pos = cbor(buf, pos)
        return value, pos
    sys.exit(f"salvage.sh: unexpected CBOR major type {major} at {pos - 1}")

def uints(column):
    """A packed column of LEB128 unsigned integers."""
    values, value, shift = [], 0, 0
    for byte in column:
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            values.append(value)
            value, shift = 0, 0
    assert shift == 0, "a column ends inside an integer"
    return values

def strings(column):
    """A packed column of strings: each a LEB128 length, then its bytes."""
    values, pos = [], 0
    while pos < len(column):
        n, shift = 0, 0
        while True:
            byte = column[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        values.append(bytes(column[pos:pos + n]))
        pos += n
    return values

def cumulative(values):
    total, sums = 0, []
    for v in values:
        total += v
        sums.append(total)
    return sums

f = open(archive, "rb")
def at(offset, n):
    f.seek(offset)
    return f.read(n)
length = os.fstat(f.fileno()).st_size
assert at(0, 8) == b"\x89ARC\r\n\x1a\n", "not an arc archive"
index_len, index_raw_len, _, magic = struct.unpack("<QQQQ", at(length - 32, 32))
assert magic == 0x0A58444943524189, "bad trailer magic"
index_offset = length - 32 - index_len
raw = subprocess.run(["zstd", "-dcq"], input=at(index_offset, index_len), stdout=subprocess.PIPE,
                     check=True).stdout
assert len(raw) == index_raw_len, "index length"
index, end = cbor(raw)
assert end == len(raw), "bytes after the index map"

kinds, sizes, depths = index["kinds"], uints(index["sizes"]), uints(index["depths"])
names = strings(index["names"])
assert len(names) == len(depths) == len(kinds)
assert len(sizes) == sum(1 for k in kinds if k == 1), "one size per regular file"
sparse = index["sparse"]
sparse_files, counts = uints(sparse["files"]), uints(sparse["counts"])
extent_lens = uints(sparse["lens"])
# A copy (FORMAT.md §4.8) stores nothing; its bytes are its source's.
copies = dict(zip(uints(index["copies"]["files"]), uints(index["copies"]["sources"])))
blocks = index["blocks"]
lens, raw_lens, records = uints(blocks["lens"]), uints(blocks["raw_lens"]), uints(blocks["records"])
assert len(lens) == len(raw_lens) == len(blocks["hashes"]) // 8 == len(records) - 1
assert 16 + sum(records) + sum(lens) == index_offset, "records and blocks tile the archive"

# Block i: its frame ends at 16 + sum(records[0..=i]) + sum(lens[0..=i]); it holds the data
# stream's bytes up to sum(raw_lens[0..=i]).
frame_ends = [16 + r + l for r, l in zip(cumulative(records), cumulative(lens))]
for i, (n, e) in enumerate(zip(lens, frame_ends)):
    assert at(e - n, 4) == b"\x28\xb5\x2f\xfd", f"block {i} is not a zstd frame"
raw_ends = cumulative(raw_lens)

# A sparse file stores the sum of its extents' lengths; a dense one its size.
stored_of, at = {}, 0
for entry, count in zip(sparse_files, counts):
    stored_of[entry] = sum(extent_lens[at:at + count])
    at += count

assert names[0] == base, f"the archive's root is {names[0]!r}, not {base!r}"
stack, ends, size_at, offset, empty = [], [], iter(sizes), 0, 0
end_of = {}
for entry, (name, depth, kind) in enumerate(zip(names, depths, kinds)):
    del stack[depth:]
    stack.append(name)
    if kind != 1:
        continue
    size = next(size_at)
    if entry in copies:
        # Its entry is in the record of the block where the next stored byte is (FORMAT.md
        # §3.2): that block's frame must end by the cut too, for salvage to know of it.
        here = frame_ends[min(bisect.bisect_left(raw_ends, offset), len(frame_ends) - 1)]
        ends.append((max(end_of[copies[entry]], here), b"/".join(stack)))
        continue
    stored = stored_of.get(entry, size)
    if stored == 0:
        empty += 1
    else:
        # The block holding the file's last stored byte: the last of those it overlaps.
        last = bisect.bisect_right(raw_ends, offset + stored - 1)
        end_of[entry] = frame_ends[last]
        ends.append((frame_ends[last], b"/".join(stack)))
    offset += stored
assert offset == sum(raw_lens), "the data stream is the files' stored bytes"
ends.sort()

with open(out, "wb") as facts:
    pickle.dump((source, [e for e, _ in ends], [p for _, p in ends]), facts)
print(len(kinds), len(sizes), empty, len(sparse_files), len(lens), index_len, len(source))
EOF
)
}

# Counts, for a cut at CUT bytes of the arc archive: the regular files under DA that are
# identical to TREE's and those that differ (or are not in TREE); the non-empty files wholly
# before the cut and how many of them are not among the identical ones; the regular files
# under DT identical to TREE's; the MiB in the identical files of each.
count() {
    python3 - "$work/facts.pickle" "$1" "$2" "$3" < <(printf '%s\n' "$DIGEST_PY"; cat <<'EOF'
import bisect, hashlib, os, pickle, stat, sys

facts, cut, arc_dir, tar_dir = sys.argv[1], int(sys.argv[2]), *map(os.fsencode, sys.argv[3:5])
with open(facts, "rb") as f:
    source, ends, paths = pickle.load(f)

def identical(root):
    """The relative paths of the regular files under root that are TREE's, and how many differ."""
    same, differ = set(), 0
    for d, _, files in os.walk(root):
        for name in files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                continue
            rel = os.path.relpath(p, root)
            want = source.get(rel)
            if want is not None and want[0] == st.st_size and want[1] == digest(p):
                same.add(rel)
            else:
                differ += 1
    return same, differ

arc_same, arc_differ = identical(arc_dir)
tar_same, _ = identical(tar_dir)
before = paths[:bisect.bisect_right(ends, cut)]
missed = sum(1 for path in before if path not in arc_same)
mib = lambda paths: f"{sum(source[p][0] for p in paths) / 2**20:.1f}"
print(len(arc_same), arc_differ, len(before), missed, len(tar_same), mib(arc_same), mib(tar_same))
EOF
)
}

echo "== reading the arc index and hashing $TREE" >&2
facts=$(prepare)
read -r entries files empty sparse blocks index_len source_files <<<"$facts"

results=$work/results
: >"$results"
python3 - "$CUTS" "$SEED" "$arc_len" "$tar_len" >"$work/cuts" <<'EOF'
import random, sys

cuts, seed, arc_len, tar_len = (int(a) for a in sys.argv[1:5])
rng = random.Random(seed)
for f in sorted(rng.uniform(0.02, 0.98) for _ in range(cuts)):
    print(f"{f:.4f}", int(f * arc_len), int(f * tar_len))
EOF
while read -r fraction arc_keep tar_keep; do
    echo "== cut at $fraction: $arc_keep of $arc_len arc bytes, $tar_keep of $tar_len tar bytes" >&2
    cut_arc=$work/cut.arc cut_tar=$work/cut.tar.zst da=$work/arc-out dt=$work/tar-out
    head -c "$arc_keep" "$arc_out" >"$cut_arc"
    head -c "$tar_keep" "$tzst" >"$cut_tar"
    mkdir "$da" "$dt"
    status=0
    "$ARC" read -q --salvage "$cut_arc" -C "$da" 2>"$work/arc.err" || status=$?
    if [[ $status -ne 0 && $status -ne 2 ]]; then
        tail -n 5 "$work/arc.err" >&2
        die "arc read --salvage exited with status $status at the cut at $fraction"
    fi
    tar --zstd -xf "$cut_tar" -C "$dt" 2>/dev/null || true
    # In the foreground, so that an interrupted script waits for it, then cleans up.
    counts=$(count "$arc_keep" "$da" "$dt")
    echo "$fraction $arc_keep $tar_keep $status $counts" >>"$results"
    rm -rf "$da" "$dt" "$cut_arc" "$cut_tar"
done <"$work/cuts"

echo "## Salvage of cut archives: $TREE"
echo
echo "- $entries entries, $files regular files stored ($empty empty, $sparse sparse); $source_files regular files in the tree, hard links included"
echo "- arc: $arc_len bytes, $blocks blocks, index frame $index_len bytes; tar --zstd: $tar_len bytes"
echo "- $("$ARC" --version) ($ARC$(git -C "$repo" describe --always --dirty 2>/dev/null | sed 's/^/, commit /')); $(tar --version | head -n1); zstd $(zstd -V | grep -o 'v[0-9.]*' | head -n1)"
echo "- $CUTS cuts, seed $SEED; files are regular files (hard links too) byte-identical to the tree's;"
echo "  \"wholly before\" counts the non-empty files whose stored bytes all lie in blocks that end by the cut;"
echo "  MiB recovered is the size of the identical files. The tools store files in different orders (arc in"
echo "  sorted tree order, tar in directory order), so the same cut keeps different files of each"
echo
python3 - "$results" <<'EOF'
import sys

rows = [line.split() for line in open(sys.argv[1])]
print("| fraction | arc bytes kept | arc exit | arc files recovered | arc files differing "
      "| wholly before the cut | of those not recovered | tar bytes kept | tar files recovered "
      "| arc MiB recovered | tar MiB recovered |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for f, arc_keep, tar_keep, status, same, differ, before, missed, tar_same, arc_mib, tar_mib in rows:
    print(f"| {f} | {arc_keep} | {status} | {same} | {differ} | {before} | {missed} | {tar_keep} | {tar_same} "
          f"| {arc_mib} | {tar_mib} |")
total = lambda i: sum(int(r[i]) for r in rows)
below_tar = [r[0] for r in rows if int(r[4]) < int(r[8])]
below_before = [r[0] for r in rows if int(r[4]) < int(r[6]) or int(r[7]) > 0]
print(f"\nTotals: arc recovered {total(4)}, differing {total(5)}; wholly before the cuts {total(6)}, "
      f"not recovered {total(7)}; tar recovered {total(8)}. "
      f"arc >= tar at every cut: {'yes' if not below_tar else 'no (' + ', '.join(below_tar) + ')'}; "
      f"arc >= wholly before at every cut: {'yes' if not below_before else 'no (' + ', '.join(below_before) + ')'}.")
sys.exit(1 if total(5) or below_before else 0)
EOF
