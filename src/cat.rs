//! `arc cat`: the contents of files in an archive, to stdout, as `tar -xOf` writes them.
//!
//! Only the blocks of the files asked for are read and decompressed, each once while files
//! that share it are written. Nothing is written to disk; stdout carries the bytes alone. A
//! broken pipe (`arc cat x.arc big | head`) ends quietly.

use std::io::{BufWriter, Write};

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;

use crate::archive::Archive;
use crate::format::Kind;
use crate::select;

#[derive(Debug, Clone)]
pub struct CatOptions {
    pub archive: Utf8PathBuf,
    /// Files, or directories whose files are written, as `list` prints them.
    pub paths: Vec<String>,
}

pub fn run(options: &CatOptions) -> Result<()> {
    let archive = Archive::open(&options.archive)?;
    let index = &archive.index;
    // Check every PATH before writing a byte.
    let mut chosen = Vec::with_capacity(options.paths.len());
    for path in &options.paths {
        let Some(i) = select::find_printed(index, path) else {
            bail!("reading {}: {path} is not in the archive", options.archive);
        };
        if let Kind::Symlink { target } = &index.entries[i].kind {
            bail!("reading {}: {path} is a symlink (to {target}); arc cat writes files", options.archive);
        }
        chosen.push(i);
    }
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    match write_files(&archive, &chosen, &mut out).and_then(|()| out.flush().map_err(Into::into)) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        result => result,
    }
}

/// Writes the files of `chosen` (each a file, or a directory and its subtree) in order.
fn write_files(archive: &Archive, chosen: &[usize], out: &mut impl Write) -> Result<()> {
    let index = &archive.index;
    let (mut frame, mut data) = (Vec::new(), Vec::new());
    // The block whose contents `data` holds: consecutive files often share one.
    let mut held = None;
    for &top in chosen {
        for i in top..index.subtree_end(top) {
            let Kind::File { size, offset } = index.entries[i].kind else { continue };
            for b in index.blocks_of(i) {
                let block = &index.blocks[b];
                if held != Some(b) {
                    archive.read_block(block, &mut frame, &mut data).with_context(|| {
                        format!("reading {}: damaged data of {}", archive.path, index.path(i))
                    })?;
                    held = Some(b);
                }
                let start = offset.max(block.raw_offset);
                let end = (offset + size).min(block.raw_end());
                let piece = &data[(start - block.raw_offset) as usize..(end - block.raw_offset) as usize];
                out.write_all(piece).context("writing to stdout")?;
            }
        }
    }
    Ok(())
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
