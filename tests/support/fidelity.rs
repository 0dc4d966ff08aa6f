//! Full fidelity (format version 2): a tree holding everything arc promises to keep when it
//! reads as root ([`build_fidelity_tree`]), a comparison of two trees that looks at all of it
//! ([`compare_trees`]), and what a comparison may let differ ([`Expect`]).
//!
//! Everything is done with system calls through rustix (xattrs, ACLs as their binary xattr
//! values, mknod, SEEK_DATA/SEEK_HOLE): CI has no setfacl, getfattr or attr binaries.
//! Not included by the fuzz harness.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{FileType, Mode, SeekFrom, XattrFlags, CWD};

use super::tree::{make_fifo, pseudo_random, set_mode, set_mtime, stamp_mtimes};

/// The socket of the fidelity tree, relative to its root: never archived.
pub const SOCKET: &str = "special/socket";
/// The character device (1,3, as /dev/null) and the block device (7,0, as /dev/loop0) of the
/// fidelity tree: extracted only by root with `--same-permissions`.
pub const DEVICES: [&str; 2] = ["special/null", "special/loop0"];
/// The 1 GiB sparse file of the fidelity tree.
pub const SPARSE: &str = "sparse/one-gib";
/// The file of the fidelity tree that has a `security.capability` xattr.
pub const CAPABLE: &str = "caps/bind-low-ports";
/// The owner of `owners/numeric`: ids no account of this machine has.
pub const NUMERIC_OWNER: (u32, u32) = (1234, 5678);
/// The owner of `owners/named` and `owners/named-dir`: a user and a group this machine has
/// (Debian's uid 33 and gid 34, looked up rather than assumed).
pub const NAMED_OWNER: (&str, &str) = ("www-data", "backup");

/// The length of a sparse file made by [`sparse_pieces`]: 1 GiB.
pub const SPARSE_LEN: u64 = 1 << 30;
/// The size of each of the three pieces of data in a sparse file.
pub const SPARSE_PIECE: usize = 4096;
/// How many bytes a file of a copy may have allocated beyond its source's: filesystems round
/// allocations and may give an xattr a block of its own.
pub const ALLOCATION_SLACK: u64 = 64 << 10;

/// Tags of the entries of a POSIX ACL in its xattr form (linux/posix_acl.h).
pub const ACL_USER_OBJ: u16 = 0x01;
pub const ACL_USER: u16 = 0x02;
pub const ACL_GROUP_OBJ: u16 = 0x04;
pub const ACL_GROUP: u16 = 0x08;
pub const ACL_MASK: u16 = 0x10;
pub const ACL_OTHER: u16 = 0x20;
/// The id of the entries that name no one (the owner, owning group, mask and others): the
/// kernel writes it so, so a value read back equals the one written.
pub const ACL_NO_ID: u32 = u32::MAX;
/// `POSIX_ACL_XATTR_VERSION` (linux/posix_acl_xattr.h).
const ACL_XATTR_VERSION: u32 = 2;

/// The xattrs POSIX ACLs are kept in.
pub const ACL_ACCESS: &str = "system.posix_acl_access";
pub const ACL_DEFAULT: &str = "system.posix_acl_default";

/// An access ACL with a named user and a mask, for a file of mode 0660 (group bits = mask).
const FILE_ACL: [(u16, u16, u32); 5] = [
    (ACL_USER_OBJ, 6, ACL_NO_ID),
    (ACL_USER, 6, NUMERIC_OWNER.0),
    (ACL_GROUP_OBJ, 4, ACL_NO_ID),
    (ACL_MASK, 6, ACL_NO_ID),
    (ACL_OTHER, 0, ACL_NO_ID),
];
const FILE_ACL_MODE: u32 = 0o660;
/// An access ACL for a directory of mode 0775.
const DIR_ACL: [(u16, u16, u32); 5] = [
    (ACL_USER_OBJ, 7, ACL_NO_ID),
    (ACL_USER, 7, NUMERIC_OWNER.0),
    (ACL_GROUP_OBJ, 5, ACL_NO_ID),
    (ACL_MASK, 7, ACL_NO_ID),
    (ACL_OTHER, 5, ACL_NO_ID),
];
const DIR_ACL_MODE: u32 = 0o775;
/// A default ACL (what entries created in the directory inherit), with a named group too.
const DIR_DEFAULT_ACL: [(u16, u16, u32); 6] = [
    (ACL_USER_OBJ, 7, ACL_NO_ID),
    (ACL_USER, 5, NUMERIC_OWNER.0),
    (ACL_GROUP_OBJ, 5, ACL_NO_ID),
    (ACL_GROUP, 5, NUMERIC_OWNER.1),
    (ACL_MASK, 5, ACL_NO_ID),
    (ACL_OTHER, 0, ACL_NO_ID),
];

/// `VFS_CAP_REVISION_2` and `VFS_CAP_FLAGS_EFFECTIVE` (linux/capability.h).
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;
const CAP_NET_BIND_SERVICE: u32 = 10;

/// Whether this process runs as root (tests that need root skip themselves otherwise).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The effective (uid, gid) of this process: who owns what it creates.
pub fn effective_ids() -> (u32, u32) {
    (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw())
}

/// The value of `system.posix_acl_access` or `system.posix_acl_default` for ACL entries of
/// (tag, permission bits, id): a u32 version, then per entry a u16 tag, a u16 permission and
/// a u32 id, all little-endian (linux/posix_acl_xattr.h). Entries must be in the kernel's
/// order: by tag, named ones by id.
pub fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut value = ACL_XATTR_VERSION.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        value.extend(tag.to_le_bytes());
        value.extend(perm.to_le_bytes());
        value.extend(id.to_le_bytes());
    }
    value
}

/// A `security.capability` value granting CAP_NET_BIND_SERVICE, permitted and effective:
/// `struct vfs_cap_data` of revision 2, 20 bytes (magic_etc, then permitted and inheritable
/// for the low and the high 32 capabilities), little-endian.
pub fn capability_xattr() -> Vec<u8> {
    let words = [VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, 1 << CAP_NET_BIND_SERVICE, 0, 0, 0];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Sets xattr `name` of `path` itself (never following a symlink).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setting xattr {name} of {}: {e}", path.display()));
}

/// Removes xattr `name` of `path` itself.
pub fn remove_xattr(path: &Path, name: &str) {
    rustix::fs::lremovexattr(path, name)
        .unwrap_or_else(|e| panic!("removing xattr {name} of {}: {e}", path.display()));
}

/// Every xattr of `path` itself (a symlink is not followed), by name, both as bytes.
pub fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    try_xattrs(path).unwrap_or_else(|e| panic!("reading the xattrs of {}: {e}", path.display()))
}

fn try_xattrs(path: &Path) -> rustix::io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut names = vec![0; rustix::fs::llistxattr_query(path)?];
    let len = if names.is_empty() { 0 } else { rustix::fs::llistxattr(path, &mut names[..])? };
    names.truncate(len);
    let mut out = BTreeMap::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = OsStr::from_bytes(name);
        let mut value = vec![0; rustix::fs::lgetxattr_query(path, name_os)?];
        let len = if value.is_empty() { 0 } else { rustix::fs::lgetxattr(path, name_os, &mut value[..])? };
        value.truncate(len);
        out.insert(name.to_vec(), value);
    }
    Ok(out)
}

/// Bytes allocated to `path` on disk (`st_blocks` × 512).
pub fn allocated(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).blocks() * 512
}

/// The data regions of file `path` as SEEK_DATA and SEEK_HOLE see them: (start, end) pairs,
/// in order; everything else is a hole.
pub fn data_regions(path: &Path) -> Vec<(u64, u64)> {
    try_data_regions(path).unwrap_or_else(|e| panic!("finding the holes of {}: {e}", path.display()))
}

fn try_data_regions(path: &Path) -> std::io::Result<Vec<(u64, u64)>> {
    let file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut regions = Vec::new();
    let mut at = 0;
    while at < len {
        let start = match rustix::fs::seek(&file, SeekFrom::Data(at)) {
            Ok(start) => start,
            // No data after `at`.
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = rustix::fs::seek(&file, SeekFrom::Hole(start))?;
        regions.push((start, end));
        at = end;
    }
    Ok(regions)
}

/// The three pieces of data of a sparse file of `len` bytes: 4 KiB at the start, in the
/// middle and at the end (offsets aligned to 4 KiB), each different.
pub fn sparse_pieces(len: u64) -> Vec<(u64, Vec<u8>)> {
    let piece = SPARSE_PIECE as u64;
    [0, len / 2 / piece * piece, len - piece]
        .into_iter()
        .zip(1u64..)
        .map(|(at, seed)| (at, pseudo_random(SPARSE_PIECE, 0x59a_75e + seed)))
        .collect()
}

/// Makes `path` a file of `len` bytes that holds `pieces` (offset, bytes) and holes elsewhere:
/// its length is set first, then the pieces are written where they go.
pub fn make_sparse_file(path: &Path, len: u64, pieces: &[(u64, Vec<u8>)]) {
    let file = fs::File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    file.set_len(len).unwrap_or_else(|e| panic!("setting the length of {}: {e}", path.display()));
    for (at, bytes) in pieces {
        file.write_all_at(bytes, *at).unwrap_or_else(|e| panic!("writing {} at {at}: {e}", path.display()));
    }
}

/// What a filesystem may or may not keep; [`base_keeping`] tries each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `user.*` xattrs on files and directories.
    UserXattrs,
    /// `trusted.*` xattrs and `security.capability` (root only).
    PrivilegedXattrs,
    /// POSIX ACLs, access and default.
    Acls,
    /// Holes in files, found again by SEEK_DATA/SEEK_HOLE.
    Holes,
    /// Device nodes (root only).
    Devices,
}

/// All that [`build_fidelity_tree`] needs of its filesystem.
pub const EVERYTHING: &[Feature] =
    &[Feature::UserXattrs, Feature::PrivilegedXattrs, Feature::Acls, Feature::Holes, Feature::Devices];

/// The directory to make test environments in for trees that need `features`: /dev/shm (fast)
/// when its filesystem keeps them all, else the temporary directory (/tmp, on the root
/// filesystem). Says which on stderr, and why when it is not /dev/shm; panics if neither
/// keeps everything.
pub fn base_keeping(features: &[Feature]) -> PathBuf {
    let mut lacking = Vec::new();
    for base in [PathBuf::from("/dev/shm"), std::env::temp_dir()] {
        if !base.is_dir() {
            lacking.push(format!("{} does not exist", base.display()));
            continue;
        }
        let missing: Vec<Feature> = features.iter().copied().filter(|&f| !keeps(&base, f)).collect();
        if missing.is_empty() {
            let before =
                if lacking.is_empty() { String::new() } else { format!(" ({})", lacking.join("; ")) };
            eprintln!("note: building the test tree in {}{before}", base.display());
            return base;
        }
        lacking.push(format!("{} does not keep {missing:?}", base.display()));
    }
    panic!("no filesystem to test on: {}", lacking.join("; "));
}

/// Whether the filesystem of `base` keeps `feature`, found by trying it in a scratch directory.
fn keeps(base: &Path, feature: Feature) -> bool {
    let Ok(scratch) = tempfile::Builder::new().prefix("arc-probe-").tempdir_in(base) else {
        return false;
    };
    let file = scratch.path().join("file");
    if fs::write(&file, b"probe").is_err() {
        return false;
    }
    let kept = |path: &Path, name: &str, value: &[u8]| {
        rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).is_ok()
            && try_xattrs(path).is_ok_and(|all| all.get(name.as_bytes()).is_some_and(|v| v == value))
    };
    match feature {
        Feature::UserXattrs => kept(&file, "user.probe", b"probe"),
        Feature::PrivilegedXattrs => {
            kept(&file, "trusted.probe", b"probe") && kept(&file, "security.capability", &capability_xattr())
        }
        Feature::Acls => {
            let dir = scratch.path().join("dir");
            fs::create_dir(&dir).is_ok()
                && kept(&file, ACL_ACCESS, &acl_xattr(&FILE_ACL))
                && kept(&dir, ACL_DEFAULT, &acl_xattr(&DIR_DEFAULT_ACL))
        }
        Feature::Holes => {
            let len = 1 << 20;
            make_sparse_file(&file, len, &[(len / 2, vec![1; SPARSE_PIECE])]);
            let piece = (len / 2, len / 2 + SPARSE_PIECE as u64);
            let Ok(regions) = try_data_regions(&file) else { return false };
            allocated(&file) <= ALLOCATION_SLACK
                && regions.len() == 1
                && regions[0].0 <= piece.0
                && regions[0].1 >= piece.1
                && regions[0].1 - regions[0].0 < len / 2
        }
        Feature::Devices => {
            make_device(&scratch.path().join("null"), FileType::CharacterDevice, (1, 3)).is_ok()
        }
    }
}

fn make_device(path: &Path, kind: FileType, (major, minor): (u32, u32)) -> rustix::io::Result<()> {
    rustix::fs::mknodat(CWD, path, kind, Mode::from_raw_mode(0o600), rustix::fs::makedev(major, minor))
}

/// The id of account `name` in `file` (/etc/passwd or /etc/group: the third field).
fn id_in(file: &str, name: &str) -> Option<u32> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}

/// Whether `file` (/etc/passwd or /etc/group) has an account with id `id`.
fn id_taken(file: &str, id: u32) -> bool {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {file}: {e}"));
    text.lines().any(|line| line.split(':').nth(2).and_then(|f| f.parse().ok()) == Some(id))
}

/// The uid of user `name` on this machine.
pub fn uid_of(name: &str) -> u32 {
    id_in("/etc/passwd", name).unwrap_or_else(|| panic!("this machine has no user {name} in /etc/passwd"))
}

/// The gid of group `name` on this machine.
pub fn gid_of(name: &str) -> u32 {
    id_in("/etc/group", name).unwrap_or_else(|| panic!("this machine has no group {name} in /etc/group"))
}

/// A program and arguments to put before a command so that it runs with the user and group
/// of [`NAMED_OWNER`] renumbered to `ids` (uid, gid): /etc/passwd and /etc/group are replaced
/// by edited copies (written in `dir`) by bind mounts in a mount namespace of the command's
/// own, so nothing outside it sees them. `None`, after a note, where that cannot be done (no
/// unshare, or no right to mount).
pub fn with_named_owner_renumbered(dir: &Path, ids: (u32, u32)) -> Option<Vec<String>> {
    assert!(
        !id_taken("/etc/passwd", ids.0) && !id_taken("/etc/group", ids.1),
        "uid {} or gid {} already has a name on this machine",
        ids.0,
        ids.1
    );
    let renumber = |file: &str, name: &str, id: u32| -> PathBuf {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        let mut found = false;
        let edited: String = text
            .lines()
            .map(|line| {
                let mut fields: Vec<&str> = line.split(':').collect();
                let id = id.to_string();
                if fields.first() == Some(&name) && fields.len() > 2 {
                    found = true;
                    fields[2] = &id;
                    fields.join(":") + "\n"
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        assert!(found, "no {name} in {file}");
        let copy = dir.join(Path::new(file).file_name().expect("a file name"));
        fs::write(&copy, edited).unwrap_or_else(|e| panic!("writing {}: {e}", copy.display()));
        copy
    };
    let passwd = renumber("/etc/passwd", NAMED_OWNER.0, ids.0);
    let group = renumber("/etc/group", NAMED_OWNER.1, ids.1);
    let wrapper: Vec<String> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        r#"mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@""#,
        "sh",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([passwd, group].iter().map(|p| p.to_str().expect("a UTF-8 temporary path").to_owned()))
    .collect();
    // The account database as a program linked with libc sees it inside.
    let probe =
        Command::new(&wrapper[0]).args(&wrapper[1..]).args(["getent", "passwd", NAMED_OWNER.0]).output();
    let wanted = format!("{}:x:{}:", NAMED_OWNER.0, ids.0);
    match probe {
        Ok(out) if out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with(&wanted) => {
            Some(wrapper)
        }
        Ok(out) => {
            eprintln!(
                "note: cannot renumber {} in a mount namespace of its own: {}",
                NAMED_OWNER.0,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("note: cannot run unshare to renumber {}: {e}", NAMED_OWNER.0);
            None
        }
    }
}

/// Writes `contents` to `path`, creating its parents.
fn write_file(path: &Path, contents: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn make_dir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
}

fn make_symlink(target: &[u8], path: &Path) {
    std::os::unix::fs::symlink(OsStr::from_bytes(target), path)
        .unwrap_or_else(|e| panic!("creating symlink {}: {e}", path.display()));
}

fn hard_link(original: &Path, link: &Path) {
    fs::hard_link(original, link)
        .unwrap_or_else(|e| panic!("linking {} to {}: {e}", link.display(), original.display()));
}

fn lchown(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {uid}:{gid} {}: {e}", path.display()));
}

/// Builds at `root` (created, with its parents) a tree of everything arc keeps as root:
///
/// - `a/`, `b/`, `c/`: hard links across directories: `a/two` with `b/two-again`; `a/three`
///   (with a `user.comment`) with `b/three-again` and `c/three-once-more`;
/// - [`SPARSE`]: 1 GiB with 12 KiB of data in three 4 KiB pieces ([`sparse_pieces`]);
/// - `xattrs/`: `user.*` xattrs (text, binary with NULs, empty, 1000 bytes) on a file and a
///   directory, a `trusted.*` xattr on a file; the root has one too;
/// - [`CAPABLE`]: an executable with `security.capability` (CAP_NET_BIND_SERVICE);
/// - `acl/file` (access ACL, mode 0660) and `acl/dir` (access and default ACLs, mode 0775),
///   with `acl/dir/inherited` and `acl/dir/sub` made after, so they inherit the default;
/// - `owners/`: a file and a symlink owned by [`NUMERIC_OWNER`], a file and a directory by
///   [`NAMED_OWNER`];
/// - `modes/`: setuid (04755), setgid (02755), private (0600) files, a sticky directory;
/// - `special/`: a FIFO, the devices of [`DEVICES`], the socket [`SOCKET`];
/// - `names/`: non-UTF-8 names (`caf\xe9`, `\xff\xfe/`), symlinks with non-UTF-8 targets;
/// - `edge/`: an empty file, an empty directory, a file with an mtime of 999999999 ns, a chain
///   of 40 directories, a dangling symlink.
///
/// Every entry gets a distinct mtime with nanoseconds, set last, children before parents.
/// Needs root and a filesystem that keeps [`EVERYTHING`] ([`base_keeping`]).
pub fn build_fidelity_tree(root: &Path) {
    assert!(is_root(), "the fidelity tree needs root (owners, devices, security.capability)");
    let at = |rel: &str| root.join(rel);
    let at_bytes = |rel: &[u8]| root.join(OsStr::from_bytes(rel));
    make_dir(root);

    // Hard links, across directories.
    write_file(&at("a/two"), b"one inode, two names\n");
    write_file(&at("a/three"), &pseudo_random(10_000, 3));
    make_dir(&at("b"));
    make_dir(&at("c"));
    hard_link(&at("a/two"), &at("b/two-again"));
    hard_link(&at("a/three"), &at("b/three-again"));
    hard_link(&at("a/three"), &at("c/three-once-more"));

    make_dir(&at("sparse"));
    make_sparse_file(&at(SPARSE), SPARSE_LEN, &sparse_pieces(SPARSE_LEN));

    write_file(&at("xattrs/commented"), b"a file with xattrs\n");
    make_dir(&at("xattrs/dir"));
    write_file(&at("xattrs/trusted"), b"a file with a trusted.* xattr\n");
    write_file(&at(CAPABLE), b"#!/bin/sh\nexit 0\n");
    write_file(&at("acl/file"), b"a file with an access ACL\n");
    make_dir(&at("acl/dir"));

    write_file(&at("owners/numeric"), b"owned by ids without names\n");
    make_symlink(b"numeric", &at("owners/numeric-link"));
    write_file(&at("owners/named"), b"owned by www-data:backup\n");
    write_file(&at("owners/named-dir/inside"), b"owned by root, in a directory of www-data\n");

    write_file(&at("modes/setuid"), b"#!/bin/sh\n");
    write_file(&at("modes/setgid"), b"#!/bin/sh\n");
    write_file(&at("modes/private"), b"secret\n");
    make_dir(&at("modes/sticky-dir"));

    make_dir(&at("special"));
    make_fifo(&at("special/fifo"));
    make_device(&at(DEVICES[0]), FileType::CharacterDevice, (1, 3))
        .unwrap_or_else(|e| panic!("mknod {DEVICES:?}[0]: {e}"));
    make_device(&at(DEVICES[1]), FileType::BlockDevice, (7, 0))
        .unwrap_or_else(|e| panic!("mknod {DEVICES:?}[1]: {e}"));
    // The socket file stays when the listener is dropped.
    std::os::unix::net::UnixListener::bind(at(SOCKET))
        .unwrap_or_else(|e| panic!("binding {}: {e}", at(SOCKET).display()));

    write_file(&at_bytes(b"names/caf\xe9"), b"caf\xe9 in Latin-1\n");
    write_file(&at_bytes(b"names/\xff\xfe/inside"), b"in a directory whose name is not UTF-8\n");
    make_symlink(b"caf\xe9", &at("names/to-latin-1"));
    make_symlink(b"\x80\x81 nowhere", &at_bytes(b"names/dangling-\x80"));

    write_file(&at("edge/empty"), b"");
    make_dir(&at("edge/empty-dir"));
    write_file(&at("edge/nanoseconds"), b"an mtime with nanoseconds\n");
    let deep: PathBuf = (0..40).map(|level| format!("d{level:02}")).collect();
    write_file(&at("edge/deep").join(deep).join("bottom"), b"40 directories down\n");
    make_symlink(b"does/not/exist", &at("edge/dangling"));

    // Owners before modes (chown clears setuid and setgid) and before xattrs (chown clears
    // security.capability).
    let named = (uid_of(NAMED_OWNER.0), gid_of(NAMED_OWNER.1));
    assert!(
        !id_taken("/etc/passwd", NUMERIC_OWNER.0) && !id_taken("/etc/group", NUMERIC_OWNER.1),
        "{NUMERIC_OWNER:?} must be ids without names on this machine"
    );
    lchown(&at("owners/numeric"), NUMERIC_OWNER);
    lchown(&at("owners/numeric-link"), NUMERIC_OWNER);
    lchown(&at("owners/named"), named);
    lchown(&at("owners/named-dir"), named);

    for (rel, mode) in [
        ("modes/setuid", 0o4755),
        ("modes/setgid", 0o2755),
        ("modes/private", 0o600),
        ("modes/sticky-dir", 0o1777),
        (CAPABLE, 0o755),
        ("special/fifo", 0o640),
        (DEVICES[0], 0o666),
        (DEVICES[1], 0o660),
        ("acl/file", FILE_ACL_MODE),
        ("acl/dir", DIR_ACL_MODE),
    ] {
        set_mode(&at(rel), mode);
    }

    set_xattr(root, "user.root-note", b"the root of the fidelity tree");
    set_xattr(&at("xattrs/commented"), "user.comment", b"written by the fidelity tests");
    set_xattr(&at("xattrs/commented"), "user.binary", b"\x00\x01\x02\xff\xfe\x00\n\x7f");
    set_xattr(&at("xattrs/commented"), "user.empty", b"");
    set_xattr(&at("xattrs/commented"), "user.long", &pseudo_random(1000, 4));
    set_xattr(&at("xattrs/dir"), "user.comment", b"a directory's xattr");
    set_xattr(&at("xattrs/trusted"), "trusted.fidelity", b"only root reads or writes this");
    set_xattr(&at("a/three"), "user.comment", b"shared by three names");
    set_xattr(&at(CAPABLE), "security.capability", &capability_xattr());
    set_xattr(&at("acl/file"), ACL_ACCESS, &acl_xattr(&FILE_ACL));
    set_xattr(&at("acl/dir"), ACL_ACCESS, &acl_xattr(&DIR_ACL));
    set_xattr(&at("acl/dir"), ACL_DEFAULT, &acl_xattr(&DIR_DEFAULT_ACL));
    // Made after the default ACL, so they inherit it.
    write_file(&at("acl/dir/inherited"), b"inherits acl/dir's default ACL\n");
    make_dir(&at("acl/dir/sub"));

    stamp_mtimes(root, 0xf1de);
    set_mtime(&at("edge/nanoseconds"), 1_234_567_890, 999_999_999);

    // What the comparisons rely on really is there.
    assert_eq!(xattrs(&at(CAPABLE)).get(&b"security.capability"[..]), Some(&capability_xattr()));
    assert!(xattrs(&at("acl/dir/inherited")).contains_key(ACL_ACCESS.as_bytes()), "no ACL was inherited");
    for (rel, mode) in [("modes/setuid", 0o4755), ("acl/file", FILE_ACL_MODE), ("acl/dir", DIR_ACL_MODE)] {
        let meta = fs::symlink_metadata(at(rel)).unwrap_or_else(|e| panic!("stat {rel}: {e}"));
        assert_eq!(meta.mode() & 0o7777, mode, "the mode of {rel}");
    }
    let sparse = allocated(&at(SPARSE));
    assert!(sparse <= ALLOCATION_SLACK, "{SPARSE} has {sparse} bytes allocated: holes were not made");
}

/// Whose files a copy holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owners {
    /// The source's owners.
    Same,
    /// Everything is owned by this (uid, gid): the user who extracted it.
    All { uid: u32, gid: u32 },
    /// The source's owners with these uids and gids changed: (source id, copy id).
    Renumbered { uids: Vec<(u32, u32)>, gids: Vec<(u32, u32)> },
}

impl Owners {
    fn expected(&self, uid: u32, gid: u32) -> (u32, u32) {
        let map = |pairs: &[(u32, u32)], id: u32| pairs.iter().find(|p| p.0 == id).map_or(id, |p| p.1);
        match self {
            Owners::Same => (uid, gid),
            Owners::All { uid, gid } => (*uid, *gid),
            Owners::Renumbered { uids, gids } => (map(uids, uid), map(gids, gid)),
        }
    }
}

/// Which differences between a source tree and its copy [`compare_trees`] lets pass; each
/// `true` is also required (a socket that is there when `sockets_absent` is a difference).
#[derive(Clone, Debug)]
pub struct Expect {
    /// Sockets are missing from the copy (arc does not archive them).
    pub sockets_absent: bool,
    /// Character and block devices are missing from the copy.
    pub devices_absent: bool,
    /// The copy has no `security.*` and no `trusted.*` xattrs.
    pub privileged_xattrs_absent: bool,
    /// The copy has no setuid and no setgid bits.
    pub special_bits_cleared: bool,
    pub owners: Owners,
}

impl Expect {
    /// Everything the same.
    pub fn exact() -> Expect {
        Expect {
            sockets_absent: false,
            devices_absent: false,
            privileged_xattrs_absent: false,
            special_bits_cleared: false,
            owners: Owners::Same,
        }
    }

    /// Whether an entry of type `kind` is missing from the copy.
    fn absent(&self, kind: EntryType) -> bool {
        match kind {
            EntryType::Socket => self.sockets_absent,
            EntryType::CharDevice | EntryType::BlockDevice => self.devices_absent,
            _ => false,
        }
    }

    /// The xattrs the copy of an entry with `xattrs` has.
    fn xattrs(&self, xattrs: &BTreeMap<Vec<u8>, Vec<u8>>) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let privileged = |name: &[u8]| name.starts_with(b"security.") || name.starts_with(b"trusted.");
        xattrs
            .iter()
            .filter(|(name, _)| !(self.privileged_xattrs_absent && privileged(name)))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryType {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// Everything lstat, readlink and llistxattr say about one entry.
#[derive(Debug)]
struct Entry {
    kind: EntryType,
    mode: u32,
    uid: u32,
    gid: u32,
    /// (st_dev, st_ino): what hard links share.
    inode: (u64, u64),
    size: u64,
    allocated: u64,
    mtime: (i64, i64),
    rdev: u64,
    target: Option<Vec<u8>>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Every entry beneath and including `root` (the key `b""`), by relative path as bytes,
/// never following a symlink.
fn walk(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    fn visit(path: &Path, rel: Vec<u8>, out: &mut BTreeMap<Vec<u8>, Entry>) {
        use std::os::unix::fs::FileTypeExt;
        let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        let t = meta.file_type();
        let kind = if t.is_dir() {
            EntryType::Dir
        } else if t.is_file() {
            EntryType::File
        } else if t.is_symlink() {
            EntryType::Symlink
        } else if t.is_fifo() {
            EntryType::Fifo
        } else if t.is_socket() {
            EntryType::Socket
        } else if t.is_char_device() {
            EntryType::CharDevice
        } else {
            EntryType::BlockDevice
        };
        let target = (kind == EntryType::Symlink).then(|| {
            let target = fs::read_link(path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()));
            target.into_os_string().as_bytes().to_vec()
        });
        let entry = Entry {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            inode: (meta.dev(), meta.ino()),
            size: meta.size(),
            allocated: meta.blocks() * 512,
            mtime: (meta.mtime(), meta.mtime_nsec()),
            rdev: meta.rdev(),
            target,
            xattrs: xattrs(path),
        };
        out.insert(rel.clone(), entry);
        if kind != EntryType::Dir {
            return;
        }
        for child in fs::read_dir(path).unwrap_or_else(|e| panic!("listing {}: {e}", path.display())) {
            let name = child.unwrap_or_else(|e| panic!("listing {}: {e}", path.display())).file_name();
            let mut child_rel = rel.clone();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend(name.as_bytes());
            visit(&path.join(&name), child_rel, out);
        }
    }
    let mut out = BTreeMap::new();
    visit(root, Vec::new(), &mut out);
    out
}

/// A relative path as bytes for messages: `(root)` for the root, other bytes than printable
/// ASCII escaped (`names/caf\xe9`).
pub fn show(rel: &[u8]) -> String {
    if rel.is_empty() {
        "(root)".to_owned()
    } else {
        rel.escape_ascii().to_string()
    }
}

/// An xattr value for messages: escaped, cut after 48 bytes.
fn show_value(value: &[u8]) -> String {
    let cut = &value[..value.len().min(48)];
    let more = if value.len() > cut.len() { format!("... ({} bytes)", value.len()) } else { String::new() };
    format!("\"{}\"{more}", cut.escape_ascii())
}

/// For every path of `tree` that `keep` keeps and that shares its inode with other such
/// paths: those other paths.
fn link_partners(
    tree: &BTreeMap<Vec<u8>, Entry>,
    keep: impl Fn(&[u8], &Entry) -> bool,
) -> BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> {
    let mut by_inode: BTreeMap<(u64, u64), Vec<&Vec<u8>>> = BTreeMap::new();
    for (rel, entry) in tree.iter().filter(|(rel, e)| e.kind != EntryType::Dir && keep(rel, e)) {
        by_inode.entry(entry.inode).or_default().push(rel);
    }
    let mut partners = BTreeMap::new();
    for names in by_inode.values().filter(|names| names.len() > 1) {
        for &name in names {
            let others = names.iter().filter(|&&other| other != name).map(|&o| o.clone()).collect();
            partners.insert(name.clone(), others);
        }
    }
    partners
}

/// Compares the tree at `src` with its copy at `dst`, both included and walked with lstat
/// (symlinks are compared, never followed), and returns every difference that `expect` does
/// not allow, one line each starting with the relative path: presence and file type; mode
/// (`& 0o7777`); owner and group; which paths share an inode (the hard-link groups of each
/// tree must be the same partition of its paths); size; contents; allocation (the copy may
/// have at most [`ALLOCATION_SLACK`] more bytes allocated than the source, so a sparse file
/// made dense is caught) and the hole map of files; mtime to the nanosecond, symlinks and
/// directories included; device numbers; symlink targets as bytes; and every xattr, name and
/// value as bytes (ACLs included). Empty when the copy is as `expect` says.
pub fn compare_trees(src: &Path, dst: &Path, expect: &Expect) -> Vec<String> {
    let left = walk(src);
    let right = walk(dst);
    let mut problems = Vec::new();
    for (rel, l) in &left {
        let path = show(rel);
        let absent = expect.absent(l.kind);
        let Some(r) = right.get(rel) else {
            if !absent {
                problems.push(format!("{path}: missing from the copy ({:?})", l.kind));
            }
            continue;
        };
        if absent {
            problems.push(format!("{path}: in the copy, though a {:?} should not be", l.kind));
            continue;
        }
        if l.kind != r.kind {
            problems.push(format!("{path}: type {:?} vs {:?}", l.kind, r.kind));
            continue;
        }
        let special = if expect.special_bits_cleared { 0o6000 } else { 0 };
        if l.mode & !special != r.mode {
            problems.push(format!("{path}: mode {:04o} vs {:04o}", l.mode & !special, r.mode));
        }
        let owner = expect.owners.expected(l.uid, l.gid);
        if owner != (r.uid, r.gid) {
            problems.push(format!("{path}: owner {}:{} vs {}:{}", owner.0, owner.1, r.uid, r.gid));
        }
        if l.mtime != r.mtime {
            problems.push(format!(
                "{path}: mtime {}.{:09} vs {}.{:09}",
                l.mtime.0, l.mtime.1, r.mtime.0, r.mtime.1
            ));
        }
        if matches!(l.kind, EntryType::CharDevice | EntryType::BlockDevice) && l.rdev != r.rdev {
            let dev = |d: u64| format!("{},{}", rustix::fs::major(d), rustix::fs::minor(d));
            problems.push(format!("{path}: device {} vs {}", dev(l.rdev), dev(r.rdev)));
        }
        if l.target != r.target {
            let t = |t: &Option<Vec<u8>>| show(t.as_deref().unwrap_or_default());
            problems.push(format!("{path}: symlink target {} vs {}", t(&l.target), t(&r.target)));
        }
        compare_xattrs(&path, &expect.xattrs(&l.xattrs), &r.xattrs, &mut problems);
        if l.kind == EntryType::File {
            compare_files(&path, (src, dst), rel, (l, r), &mut problems);
        }
    }
    for (rel, r) in &right {
        if !left.contains_key(rel) {
            problems.push(format!("{}: only in the copy ({:?})", show(rel), r.kind));
        }
    }
    let src_links = link_partners(&left, |rel, e| !expect.absent(e.kind) && right.contains_key(rel));
    let dst_links = link_partners(&right, |rel, _| left.contains_key(rel));
    let none = BTreeSet::new();
    for rel in src_links.keys().chain(dst_links.keys()).collect::<BTreeSet<_>>() {
        let (l, r) = (src_links.get(rel).unwrap_or(&none), dst_links.get(rel).unwrap_or(&none));
        if l != r {
            let names = |set: &BTreeSet<Vec<u8>>| set.iter().map(|p| show(p)).collect::<Vec<_>>().join(", ");
            problems.push(format!("{}: hard links with [{}] vs [{}]", show(rel), names(l), names(r)));
        }
    }
    problems
}

fn compare_xattrs(
    path: &str,
    left: &BTreeMap<Vec<u8>, Vec<u8>>,
    right: &BTreeMap<Vec<u8>, Vec<u8>>,
    problems: &mut Vec<String>,
) {
    for (name, value) in left {
        let shown = show(name);
        match right.get(name) {
            None => problems.push(format!("{path}: xattr {shown} missing from the copy")),
            Some(other) if other != value => {
                problems.push(format!("{path}: xattr {shown} {} vs {}", show_value(value), show_value(other)))
            }
            Some(_) => {}
        }
    }
    for name in right.keys().filter(|name| !left.contains_key(*name)) {
        problems.push(format!("{path}: xattr {} only in the copy", show(name)));
    }
}

/// Compares two regular files: size, allocation, hole map and contents. Only the data regions
/// of either file are read (elsewhere both are holes, so zeros): a 1 GiB sparse file costs
/// what its data costs.
fn compare_files(
    path: &str,
    (src, dst): (&Path, &Path),
    rel: &[u8],
    (l, r): (&Entry, &Entry),
    problems: &mut Vec<String>,
) {
    if l.size != r.size {
        problems.push(format!("{path}: size {} vs {}", l.size, r.size));
        return;
    }
    if r.allocated > l.allocated + ALLOCATION_SLACK {
        problems
            .push(format!("{path}: allocated {} vs {} bytes (holes not made?)", l.allocated, r.allocated));
    }
    let beneath =
        |root: &Path| if rel.is_empty() { root.to_owned() } else { root.join(OsStr::from_bytes(rel)) };
    let (a, b) = (beneath(src), beneath(dst));
    let (left_regions, right_regions) = (data_regions(&a), data_regions(&b));
    if left_regions != right_regions {
        let shown = |regions: &[(u64, u64)]| {
            let mut s =
                regions.iter().take(4).map(|(x, y)| format!("{x}..{y}")).collect::<Vec<_>>().join(" ");
            if regions.len() > 4 {
                let _ = write!(s, " ... ({} regions)", regions.len());
            }
            s
        };
        problems.push(format!(
            "{path}: data regions (hole map) [{}] vs [{}]",
            shown(&left_regions),
            shown(&right_regions)
        ));
    }
    if let Some(at) = first_difference(&a, &b, &merge(&left_regions, &right_regions)) {
        problems.push(format!("{path}: contents differ from byte {at}"));
    }
}

/// The union of two sorted lists of regions, as sorted regions that do not overlap.
fn merge(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, end) in all {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// The first offset within `regions` where files `a` and `b` differ, read 1 MiB at a time.
fn first_difference(a: &Path, b: &Path, regions: &[(u64, u64)]) -> Option<u64> {
    const CHUNK: u64 = 1 << 20;
    let open = |p: &Path| fs::File::open(p).unwrap_or_else(|e| panic!("opening {}: {e}", p.display()));
    let (fa, fb) = (open(a), open(b));
    let (mut left, mut right) = (vec![0; CHUNK as usize], vec![0; CHUNK as usize]);
    for &(start, end) in regions {
        let mut at = start;
        while at < end {
            let n = (end - at).min(CHUNK) as usize;
            fa.read_exact_at(&mut left[..n], at).unwrap_or_else(|e| panic!("reading {}: {e}", a.display()));
            fb.read_exact_at(&mut right[..n], at).unwrap_or_else(|e| panic!("reading {}: {e}", b.display()));
            if left[..n] != right[..n] {
                let i = left[..n].iter().zip(&right[..n]).position(|(x, y)| x != y).unwrap_or(0);
                return Some(at + i as u64);
            }
            at += n as u64;
        }
    }
    None
}

/// Panics, listing the differences (source vs copy), unless [`compare_trees`] finds none.
pub fn assert_trees_match(src: &Path, dst: &Path, expect: &Expect) {
    let problems = compare_trees(src, dst, expect);
    if !problems.is_empty() {
        let mut message = format!(
            "{} differs from its source {} ({} differences, source vs copy; allowed: {expect:?})\n",
            dst.display(),
            src.display(),
            problems.len()
        );
        for problem in problems.iter().take(60) {
            let _ = writeln!(message, "  {problem}");
        }
        panic!("{message}");
    }
}
