#!/usr/bin/env python3
"""What the layout of arc's data stream costs in size: the file order, the block size, the
zstd level and a trained dictionary, each measured on the contents of a real tree cut into
independently compressed blocks, as arc cuts its data stream.

Usage: benches/layout.py DIR [DIR...]     (needs the `zstandard` package: pip install zstandard)

For each DIR, one markdown table: the compressed size of the concatenated contents of its
regular files (symlinks not followed) in each layout, and its change against arc's own
(sorted pre-order, 4 MiB blocks, level 3, no dictionary). As arc stores them, a file of 512
bytes or more with the contents of a file before it in arc's order is left out (a copy,
FORMAT.md §4.8). Sizes are of the blocks alone: no index, no records. Set DICT=0 to skip the dictionaries, whose training takes a while.
docs/BENCHMARKS.md ("Layout of the data stream") has the results and what they decided.
"""

import os
import random
import sys
import time

import zstandard

MIB = 1 << 20


def walk(d, ordered):
    """Regular files under d, pre-order: siblings sorted by name bytes (arc), or in the order
    the directory lists them (GNU tar)."""
    out = []
    entries = list(os.scandir(d))
    if ordered:
        entries.sort(key=lambda e: os.fsencode(e.name))
    for e in entries:
        if e.is_symlink():
            continue
        if e.is_dir():
            out += walk(e.path, ordered)
        elif e.is_file():
            out.append(e.path)
    return out


def extension(path):
    base = os.path.basename(path)
    dot = base.rfind(".")
    return base[dot:] if dot > 0 else ""


def main():
    for root in sys.argv[1:]:
        files = walk(root, True)
        data = {}
        for path in files:
            try:
                with open(path, "rb") as f:
                    data[path] = f.read()
            except OSError:
                pass
        seen = set()
        stored = []
        for path in files:
            if path not in data:
                continue
            key = (len(data[path]), hash(data[path]))
            if len(data[path]) >= 512 and key in seen:
                continue
            seen.add(key)
            stored.append(path)
        files = stored
        kept = set(files)
        rank = {p: i for i, p in enumerate(files)}

        def size(order, block=4 * MIB, level=3, dictionary=None):
            stream = b"".join(data[p] for p in order)
            params = {"level": level}
            if dictionary is not None:
                params["dict_data"] = dictionary
            compressor = zstandard.ZstdCompressor(**params)
            return sum(len(compressor.compress(stream[i : i + block])) for i in range(0, len(stream), block))

        rows = []
        base = size(files)
        rows.append(("sorted pre-order (arc)", base, ""))
        orders = [
            ("directory order (GNU tar)", [p for p in walk(root, False) if p in kept]),
            ("by extension, then arc's order", sorted(files, key=lambda p: (extension(p), rank[p]))),
            (
                "by extension, then name, then arc's order",
                sorted(files, key=lambda p: (extension(p), os.path.basename(p), rank[p])),
            ),
            ("by size", sorted(files, key=lambda p: (len(data[p]), rank[p]))),
        ]
        for name, order in orders:
            rows.append((name, size(order), ""))
        for block in (8 * MIB, 16 * MIB):
            rows.append((f"blocks of {block // MIB} MiB", size(files, block), ""))
        for level in (4, 5, 6):
            rows.append((f"level {level}", size(files, level=level), ""))
        if os.environ.get("DICT", "1") != "0":
            small = [p for p in files if len(data[p]) < 64 * 1024]
            for dict_size, samples in ((112_640, 2000), (MIB, 4000)):
                chosen = random.Random(1).sample(small, min(samples, len(small)))
                start = time.monotonic()
                trained = zstandard.train_dictionary(dict_size, [data[p] for p in chosen], threads=-1)
                took = time.monotonic() - start
                stored = len(zstandard.ZstdCompressor(level=19).compress(trained.as_bytes()))
                blocks = size(files, dictionary=trained)
                note = f"{blocks:,} + dictionary {stored:,} (trained in {took:.0f} s)"
                rows.append((f"dictionary of {dict_size // 1024} KiB, {samples} samples", blocks + stored, note))
        total = sum(len(data[p]) for p in files)
        print(f"#### {root} ({len(files):,} files stored, {total / 1e6:.1f} MB)\n")
        print("| layout | bytes | vs arc | note |")
        print("|---|---:|---:|---|")
        for name, n, note in rows:
            print(f"| {name} | {n:,} | {(n / base - 1) * 100:+.1f}% | {note} |")
        print(flush=True)


if __name__ == "__main__":
    main()
