//! Where `arc write` puts the archive: a temporary file renamed over OUT on success, or OUT
//! itself when it is a device, a pipe or `-`.
//!
//! Architecture Invariant: an existing OUT is replaced only by a complete archive.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// Where the archive goes: a temporary file renamed over OUT on success, or, when OUT is a
/// device, a pipe or `-`, OUT itself, written in place.
pub(super) struct Sink {
    pub(super) path: Utf8PathBuf,
    target: SinkTarget,
    /// An archive is there already: make the new one durable before it replaces the old.
    replaces: bool,
}

enum SinkTarget {
    /// The temporary file (removed when dropped unless persisted) and a buffered writer on a
    /// duplicate of its descriptor: writing through `NamedTempFile` itself would append its
    /// temporary path to every I/O error, which users should not see.
    Temp(tempfile::NamedTempFile, std::io::BufWriter<File>),
    InPlace(std::io::BufWriter<File>),
    Stdout(std::io::Stdout),
}

impl Sink {
    pub(super) fn open(path: &Utf8Path) -> Result<Sink> {
        if path.as_str() == "-" {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("writing -: refusing to write an archive to a terminal (redirect stdout)");
            }
            crate::sys::widen_pipe(&std::io::stdout());
            return Ok(Sink {
                path: path.to_owned(),
                target: SinkTarget::Stdout(std::io::stdout()),
                replaces: false,
            });
        }
        // OUT that is a symlink: replace the file it points at, as `tar -f` would write
        // through it, rather than replacing the link with a regular file.
        let resolved;
        let path = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_symlink() => {
                resolved = path.canonicalize_utf8().with_context(|| format!("resolving {path}"))?;
                resolved.as_path()
            }
            _ => path,
        };
        let special = std::fs::metadata(path).map(|m| {
            let t = m.file_type();
            t.is_char_device() || t.is_block_device() || t.is_fifo() || t.is_socket()
        });
        if let Ok(true) = special {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {path}"))?;
            return Ok(Sink {
                path: path.to_owned(),
                target: SinkTarget::InPlace(std::io::BufWriter::new(file)),
                replaces: false,
            });
        }
        if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            bail!("writing {path}: is a directory");
        }
        let dir = match path.parent() {
            Some(p) if !p.as_str().is_empty() => p,
            _ => Utf8Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".arc-")
            .suffix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(plain_io_error)
            .with_context(|| format!("writing {path}: creating a temporary file in {dir}"))?;
        let file = temp.as_file().try_clone().with_context(|| format!("writing {path}"))?;
        let writer = std::io::BufWriter::with_capacity(1 << 20, file);
        let replaces = std::fs::symlink_metadata(path).is_ok();
        Ok(Sink { path: path.to_owned(), target: SinkTarget::Temp(temp, writer), replaces })
    }

    /// (device, inode) of the file being written, so the walker can leave it out.
    pub(super) fn identity(&self) -> Result<(u64, u64)> {
        let meta = match &self.target {
            SinkTarget::Temp(temp, _) => temp.as_file().metadata()?,
            SinkTarget::InPlace(w) => w.get_ref().metadata()?,
            // stdout redirected into a file inside the tree must not be archived either.
            #[allow(clippy::unnecessary_cast)]
            SinkTarget::Stdout(out) => match rustix::fs::fstat(out) {
                Ok(stat) => return Ok((stat.st_dev as u64, stat.st_ino as u64)),
                Err(_) => return Ok((u64::MAX, u64::MAX)),
            },
        };
        Ok((meta.dev(), meta.ino()))
    }

    pub(super) fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.target {
            SinkTarget::Temp(_, w) => w.write_all(bytes),
            SinkTarget::InPlace(w) => w.write_all(bytes),
            SinkTarget::Stdout(w) => w.write_all(bytes),
        }
    }

    /// Flushes and puts the archive under its final name.
    pub(super) fn finish(self) -> Result<()> {
        match self.target {
            SinkTarget::Temp(temp, w) => {
                w.into_inner().map_err(|e| e.into_error())?;
                if self.replaces {
                    // Without this, a crash soon after the rename could leave an empty file
                    // where the old archive was.
                    temp.as_file().sync_all()?;
                }
                temp.persist(&self.path).map_err(|e| plain_io_error(e.error))?;
            }
            SinkTarget::InPlace(mut w) => w.flush()?,
            SinkTarget::Stdout(mut w) => w.flush()?,
        }
        Ok(())
    }
}

/// The OS error alone, without the temporary path tempfile appends to its errors; arc's
/// context names the archive instead.
fn plain_io_error(error: std::io::Error) -> std::io::Error {
    if let Some(code) = error.raw_os_error() {
        return std::io::Error::from_raw_os_error(code);
    }
    // tempfile wraps the OS error in a private type whose message ends in ` at path "..."`
    // and which does not expose the OS error itself; keep the message up to there.
    let message = error.to_string();
    match message.rsplit_once(" at path ") {
        Some((cause, _)) => std::io::Error::new(error.kind(), cause.to_owned()),
        None => error,
    }
}
