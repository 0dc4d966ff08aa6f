#!/usr/bin/env bash
# Mounts compared: `arc mount` against squashfuse_ll, squashfuse and fuse-zip (those that are
# installed), on one tree, every tool in the same run, each figure over RUNS fresh mounts.
#
#   benches/mount.sh DIR            (as root: mounts are made with mount(2) or the tools' own)
#
# For each tool: the image is made once (arc write; mksquashfs -comp zstd level 3; zip -1),
# in SCRATCH (tmpfs), then for each run a fresh mount measures, one at a time:
#   - ready: from starting the mount command to the first stat answered inside;
#   - `find MNT | wc -l`;
#   - every file read (`find MNT -type f -print0 | xargs -0 cat`);
#   - one deep file, read right after a fresh mount is ready (the issue's figure: every lookup
#     on the way and the file's block unread until then), and the same with the mount's own
#     time added (from starting the command to the file read);
#   - 500 files chosen at random (seeded), read by one `xargs cat`;
#   - the daemon's peak RSS (VmHWM) after reading every file.
# The same tree copied to tmpfs gives the floor without FUSE. Prints a Markdown table of
# medians with the range (min-max) of the runs.
#
# Environment: ARC (default: target/release/arc, built first), RUNS (default 3),
# TOOLS (a comma-separated subset, e.g. `arc mount,squashfuse_ll`), WRITE_ARGS (more
# arguments for `arc write`, e.g. `--block-size 1M`: the trade-off of block size),
# SCRATCH (default /dev/shm/arc-mount-bench, removed at the end), DEEP (a path relative to DIR;
# default: the deepest file that is not empty).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
source "$repo/benches/common.sh"
dir="${1:?usage: benches/mount.sh DIR}"
dir="$(cd "$dir" && pwd)"
ARC="$(find_arc "$repo")"
export ARC DIR="$dir" RUNS="${RUNS:-3}" TOOLS="${TOOLS:-}" WRITE_ARGS="${WRITE_ARGS:-}" SCRATCH="${SCRATCH:-/dev/shm/arc-mount-bench}" DEEP="${DEEP:-}"
exec python3 - <<'PYTHON'
import os, random, statistics, subprocess, sys, time, shutil

ARC, DIR, RUNS, SCRATCH = os.environ["ARC"], os.environ["DIR"], int(os.environ["RUNS"]), os.environ["SCRATCH"]
name = os.path.basename(DIR)
shutil.rmtree(SCRATCH, ignore_errors=True)
os.makedirs(SCRATCH)
mnt = os.path.join(SCRATCH, "mnt")
os.makedirs(mnt)

def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)

def have(program):
    return shutil.which(program) is not None

files = []
for root, dirs, names in os.walk(DIR):
    dirs.sort()
    for n in sorted(names):
        p = os.path.join(root, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(os.path.relpath(p, os.path.dirname(DIR)))
# The deepest file with contents: an empty one would read no block.
full = lambda f: os.path.join(os.path.dirname(DIR), f)
deep = os.environ["DEEP"] and os.path.join(name, os.environ["DEEP"]) or max(
    (f for f in files if os.path.getsize(full(f)) > 0), key=lambda f: (f.count("/"), f))
random.seed(500)
sample = random.sample(files, min(500, len(files)))
print(f"tree {DIR}: {len(files)} files; deep file {deep}", file=sys.stderr)

images = {}
arc_image = os.path.join(SCRATCH, "tree.arc")
sh(f"{ARC} write -q {os.environ['WRITE_ARGS']} -o {arc_image} {DIR}")
images["arc mount"] = (arc_image, lambda img: [ARC, "mount", img, mnt])
if have("mksquashfs"):
    img = os.path.join(SCRATCH, "tree.sqfs")
    sh(f"mksquashfs {DIR} {img} -comp zstd -Xcompression-level 3 -quiet -no-progress -keep-as-directory >/dev/null")
    for tool in ["squashfuse_ll", "squashfuse"]:
        if have(tool):
            images[tool] = (img, lambda img, tool=tool: [tool, img, mnt])
if have("fuse-zip") and have("zip"):
    img = os.path.join(SCRATCH, "tree.zip")
    sh(f"cd {os.path.dirname(DIR)} && zip -1 -q -r -y {img} {name}")
    images["fuse-zip"] = (img, lambda img: ["fuse-zip", "-r", img, mnt])

if os.environ["TOOLS"]:
    images = {t: v for t, v in images.items() if t in os.environ["TOOLS"].split(",")}

def mounted():
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mnt for line in f)

def daemon_pid():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if mnt.encode() in args and pid != str(os.getpid()):
            return int(pid)
    return None

def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

def mount(command):
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    while True:
        try:
            os.stat(os.path.join(mnt, name))
            break
        except OSError:
            time.sleep(0.0005)
    return time.perf_counter() - start

def unmount():
    pid = daemon_pid()
    subprocess.run(["umount", mnt], check=True)
    while pid and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.01)
    assert not mounted()

def timed(cmd, cwd=None):
    start = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, cwd=cwd, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start

rows = {}
for tool, (img, command) in images.items():
    cells = {k: [] for k in ["ready", "find", "all", "deep", "mount_deep", "random", "rss"]}
    for run in range(RUNS):
        cells["ready"].append(mount(command(img)))
        cells["find"].append(timed(f"find {mnt} | wc -l"))
        unmount()
        mount(command(img))
        cells["all"].append(timed("find . -type f -print0 | xargs -0 cat > /dev/null", cwd=mnt))
        cells["rss"].append(peak_rss_mib(daemon_pid()))
        unmount()
        start = time.perf_counter()
        mount(command(img))
        ready = time.perf_counter()
        with open(os.path.join(mnt, deep), "rb") as f:
            f.read()
        cells["deep"].append(time.perf_counter() - ready)
        cells["mount_deep"].append(time.perf_counter() - start)
        unmount()
        mount(command(img))
        listing = os.path.join(SCRATCH, "sample")
        with open(listing, "wb") as f:
            f.write(b"\0".join(p.encode() for p in sample))
        cells["random"].append(timed(f"xargs -0 -a {listing} cat > /dev/null", cwd=mnt))
        unmount()
        print(f"{tool} run {run + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in cells.items()), file=sys.stderr)
    rows[tool] = cells

# The floor: the tree itself on tmpfs.
copy = os.path.join(SCRATCH, "copy")
sh(f"cp -a {DIR} {copy}")
floor = {"find": [], "all": [], "deep": []}
for run in range(RUNS):
    floor["find"].append(timed(f"find {copy} | wc -l"))
    floor["all"].append(timed("find . -type f -print0 | xargs -0 cat > /dev/null", cwd=copy))
    start = time.perf_counter()
    with open(os.path.join(SCRATCH, "copy", os.path.relpath(deep, name)), "rb") as f:
        f.read()
    floor["deep"].append(time.perf_counter() - start)

def cell(values, unit):
    if not values:
        return ""
    m = statistics.median(values)
    scale, suffix = {"s": (1, " s"), "ms": (1000, " ms"), "MiB": (1, " MiB")}[unit]
    return f"{m * scale:.{3 if unit == 's' else 1}f}{suffix} ({min(values) * scale:.{3 if unit == 's' else 1}f}–{max(values) * scale:.{3 if unit == 's' else 1}f})"

print(f"\n`benches/mount.sh {DIR}`, RUNS={RUNS} fresh mounts per figure, medians (min–max):\n")
print("| | image bytes | mount ready | `find MNT \\| wc -l` | read every file | one deep file, fresh mount | mount + deep file | 500 random files | daemon peak RSS |")
print("|---|---:|---|---|---|---|---|---|---|")
for tool, c in rows.items():
    print(f"| {tool} | {os.path.getsize(images[tool][0]):,} | {cell(c['ready'], 'ms')} | {cell(c['find'], 's')} | {cell(c['all'], 's')} | {cell(c['deep'], 'ms')} | {cell(c['mount_deep'], 'ms')} | {cell(c['random'], 's')} | {cell(c['rss'], 'MiB')} |")
print(f"| the tree on tmpfs, no FUSE | | | {cell(floor['find'], 's')} | {cell(floor['all'], 's')} | {cell(floor['deep'], 'ms')} | | | |")
shutil.rmtree(SCRATCH, ignore_errors=True)
PYTHON
