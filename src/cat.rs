//! `arc cat`: the contents of files in an archive, to stdout, as `tar -xOf` writes them.
//!
//! Only the blocks of the files asked for are read and decompressed, a few at a time in
//! parallel (as many as [`Archive::decode_threads`] allows) and written in order, each once
//! while files that share it are written. Where stdout is a regular file (`> file`), each
//! block's bytes are written at their offset by the thread that decoded it, as `read` writes a
//! file, and the holes of sparse files past the file's end are not written at all. Nothing is written to disk; stdout carries the bytes
//! alone. A broken pipe (`arc cat x.arc big | head`) ends quietly.

use std::io::{BufWriter, Write};
use std::os::fd::AsFd;

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;

use rayon::prelude::*;

use crate::archive::Archive;
use crate::format::{file_writes, Kind};
use crate::select;
use crate::stop::Stop;
use crate::ui::text_of;

#[derive(Debug, Clone)]
pub struct CatOptions {
    pub archive: Utf8PathBuf,
    /// Files, or directories whose files are written, as `list` prints them.
    pub paths: Vec<String>,
    pub threads: usize,
}

pub fn run(options: &CatOptions, stop: &Stop) -> Result<()> {
    if options.archive.as_str() == "-" {
        let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        return match cat_stream(options, stop, &mut out).and_then(|()| out.flush().map_err(Into::into)) {
            Err(e) if is_broken_pipe(&e) => Ok(()),
            result => result,
        };
    }
    let archive = Archive::open_some(&options.archive, |tree| select::roots(tree, &options.paths, &[]))?;
    let index = &archive.index;
    // Check every PATH before writing a byte.
    let mut chosen = Vec::with_capacity(options.paths.len());
    for path in &options.paths {
        let Some(i) = select::find_printed(index, path) else {
            bail!("reading {}: {path} is not in the archive", options.archive);
        };
        let what = match &index.entries[i].kind() {
            Kind::Symlink { .. } => format!("a symlink (to {})", text_of(index.target(i))),
            Kind::Fifo => "a FIFO".to_owned(),
            Kind::CharDevice { .. } | Kind::BlockDevice { .. } => "a device".to_owned(),
            _ => String::new(),
        };
        if !what.is_empty() {
            bail!("reading {}: {path} is {what}; arc cat writes files", options.archive);
        }
        chosen.push(i);
    }
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let written = write_files(&archive, &chosen, options.threads, stop, &mut out);
    let result = match written.and_then(|()| out.flush().map_err(Into::into)) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        result => result,
    };
    // The index is left to the end of the process, as `list` leaves it: freeing its memory
    // while the decoding threads' address space is shared costs more than the file.
    std::mem::forget(archive);
    result
}

/// One block to decode (none for a run of holes only), and what to write from it, in order,
/// with the entry each piece belongs to (for messages).
struct Run {
    block: Option<usize>,
    pieces: Vec<(usize, Piece)>,
}

enum Piece {
    /// Bytes of the decoded block.
    Data(std::ops::Range<usize>),
    /// A hole of a sparse file: that many zeros.
    Zeros(u64),
}

impl Piece {
    /// Bytes it writes.
    fn len(&self) -> u64 {
        match self {
            Piece::Data(range) => range.len() as u64,
            Piece::Zeros(n) => *n,
        }
    }
}

/// The blocks and pieces that write the files of `chosen` (each a file or hard link, or a
/// directory and its subtree), in order; a block shared by consecutive files is one run.
fn runs(index: &crate::format::Index, chosen: &[usize]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut push = |block: Option<usize>, entry: usize, piece: Piece| match runs.last_mut() {
        Some(run) if run.block == block || block.is_none() => run.pieces.push((entry, piece)),
        _ => runs.push(Run { block, pieces: vec![(entry, piece)] }),
    };
    for &top in chosen {
        for i in top..index.subtree_end(top) {
            let Some(d) = index.data_entry(i) else { continue };
            let Kind::File { size } = index.entries[d].kind() else { continue };
            let (offset, stored) = index.span(d).unwrap_or((0, 0));
            let extents = index.extents(d);
            // Where the next byte written goes in the file: holes before it are zeros.
            let mut at = 0u64;
            for b in index.blocks_for(offset, stored) {
                let block = &index.blocks[b];
                let start = offset.max(block.raw_offset);
                let end = (offset + stored).min(block.raw_end());
                let in_block = (start - block.raw_offset) as usize;
                for (file_offset, range) in file_writes(extents, start - offset, (end - start) as usize) {
                    if file_offset > at {
                        push(Some(b), i, Piece::Zeros(file_offset - at));
                    }
                    at = file_offset + range.len() as u64;
                    push(Some(b), i, Piece::Data(in_block + range.start..in_block + range.end));
                }
            }
            if size > at {
                push(None, i, Piece::Zeros(size - at));
            }
        }
    }
    runs
}

/// Decodes runs into buffers that go round (decoded, written, reused: fresh ones of megabytes
/// each cost page faults and zeroing for every block), never keeping more buffers than may be
/// in memory at once. Frames stay with their decoding thread.
struct Decoder<'a> {
    archive: &'a Archive,
    stop: &'a Stop,
    in_memory: usize,
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

thread_local! {
    static FRAME: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Decoder<'_> {
    fn decode(&self, run: &Run) -> Result<Vec<u8>> {
        self.stop.check()?;
        let mut data = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        let Some(block) = run.block else { return Ok(data) };
        let index = &self.archive.index;
        // Only as far as the last byte written from it.
        let wanted =
            run.pieces.iter().filter_map(|(_, p)| if let Piece::Data(r) = p { Some(r.end) } else { None });
        let wanted = wanted.max().unwrap_or(0);
        let read = FRAME.with(|frame| {
            self.archive.read_block_start(&index.blocks[block], &mut frame.borrow_mut(), &mut data, wanted)
        });
        read.with_context(|| {
            let entry = run.pieces.first().map_or(0, |(i, _)| *i);
            format!("reading {}: damaged data of {}", self.archive.path, text_of(&index.path(entry)))
        })?;
        Ok(data)
    }

    fn give(&self, buffer: Vec<u8>) {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < self.in_memory {
            spare.push(buffer);
        }
    }
}

static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

/// At most this many bytes of copies are held by `cat -` until their turn comes.
const COPIES_HELD: u64 = 64 << 20;

/// Writes the files of `chosen` to stdout: at their offsets, in parallel, where stdout is a
/// regular file arc may write anywhere in; else in order.
fn write_files(
    archive: &Archive,
    chosen: &[usize],
    threads: usize,
    stop: &Stop,
    out: &mut impl Write,
) -> Result<()> {
    let runs = runs(&archive.index, chosen);
    let in_memory = archive.decode_threads(threads + 2);
    let decoder = Decoder { archive, stop, in_memory, spare: Default::default() };
    match seekable_stdout() {
        Some(place) => write_at(&decoder, &runs, threads, place),
        None => write_in_order(&decoder, &runs, out),
    }
}

/// Where stdout is a regular file not opened for appending (`arc cat ... > file`): the offset
/// writing starts at, and whether everything from there on is past the file's end (so holes
/// need not be written: they read as zeros).
fn seekable_stdout() -> Option<(u64, bool)> {
    use rustix::fs::{FileType, OFlags, SeekFrom};
    let stdout = std::io::stdout();
    let fd = stdout.as_fd();
    let stat = rustix::fs::fstat(fd).ok()?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return None;
    }
    if rustix::fs::fcntl_getfl(fd).ok()?.contains(OFlags::APPEND) {
        return None;
    }
    let at = rustix::fs::seek(fd, SeekFrom::Current(0)).ok()?;
    Some((at, at >= stat.st_size.max(0) as u64))
}

/// Decodes and writes the runs on all threads, each at its offset in stdout (a regular file),
/// as `read` writes a file; then leaves stdout's offset at the end of what was written, as
/// sequential writes would have.
fn write_at(decoder: &Decoder<'_>, runs: &[Run], threads: usize, (base, fresh): (u64, bool)) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let out =
        std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned().context("writing to stdout")?);
    let mut starts = Vec::with_capacity(runs.len());
    let mut end = base;
    for run in runs {
        starts.push(end);
        // Sizes come from the archive: a hostile one may declare more than 2^64 bytes in all.
        let len = run.pieces.iter().try_fold(0u64, |sum, (_, piece)| sum.checked_add(piece.len()));
        end = len.and_then(|len| end.checked_add(len)).context("the files add up to more than 2^64 bytes")?;
    }
    let pool = crate::sys::thread_pool(decoder.archive.decode_threads(threads))?;
    pool.install(|| {
        runs.par_iter().zip(starts).try_for_each(|(run, start)| -> Result<()> {
            let data = decoder.decode(run)?;
            let mut at = start;
            for (_, piece) in &run.pieces {
                match piece {
                    Piece::Data(range) => {
                        out.write_all_at(&data[range.clone()], at).context("writing to stdout")?
                    }
                    // Past the file's end a hole reads as zeros already.
                    Piece::Zeros(_) if fresh => {}
                    Piece::Zeros(n) => {
                        let mut done = 0;
                        while done < *n {
                            let now = (*n - done).min(ZEROS.len() as u64) as usize;
                            out.write_all_at(&ZEROS[..now], at + done).context("writing to stdout")?;
                            done += now as u64;
                        }
                    }
                }
                at += piece.len();
            }
            decoder.give(data);
            Ok(())
        })
    })?;
    // Holes at the end make the file longer without a write.
    if out.metadata().context("writing to stdout")?.len() < end {
        out.set_len(end).context("writing to stdout")?;
    }
    rustix::fs::seek(&out, rustix::fs::SeekFrom::Start(end)).context("writing to stdout")?;
    Ok(())
}

/// Decodes the runs a few at a time in parallel on one side and writes them in order on the
/// other, so that decoding the next blocks overlaps writing these. Blocks in memory: a batch
/// being decoded, one waiting and one being written, all within the archive's budget (with
/// room for fewer than three, one at a time, decoded then written).
fn write_in_order(decoder: &Decoder<'_>, runs: &[Run], out: &mut impl Write) -> Result<()> {
    let write = |out: &mut dyn Write, run: &Run, data: &[u8]| -> Result<()> {
        for (_, piece) in &run.pieces {
            match piece {
                Piece::Data(range) => out.write_all(&data[range.clone()]).context("writing to stdout")?,
                Piece::Zeros(mut n) => {
                    while n > 0 {
                        let now = n.min(ZEROS.len() as u64) as usize;
                        out.write_all(&ZEROS[..now]).context("writing to stdout")?;
                        n -= now as u64;
                    }
                }
            }
        }
        Ok(())
    };
    // One block (one small file, say) is decoded here: threads would cost more than it.
    if decoder.in_memory < 3 || runs.len() <= 1 {
        for run in runs {
            let data = decoder.decode(run)?;
            write(out, run, &data)?;
            decoder.give(data);
        }
        return Ok(());
    }
    let batch = decoder.in_memory - 2;
    let pool = crate::sys::thread_pool(batch)?;
    let (decoded_tx, decoded_rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>>>(1);
    std::thread::scope(|scope| {
        let pool = &pool;
        scope.spawn(move || {
            for chunk in runs.chunks(batch) {
                let decoded: Vec<Result<Vec<u8>>> =
                    pool.install(|| chunk.par_iter().map(|run| decoder.decode(run)).collect());
                for data in decoded {
                    // The writer stopped (an error, a closed pipe): nothing more to do.
                    if decoded_tx.send(data).is_err() {
                        return;
                    }
                }
            }
        });
        let written = (|| -> Result<()> {
            for run in runs {
                decoder.stop.check()?;
                let data = decoded_rx.recv().context("a decoder stopped")??;
                write(out, run, &data)?;
                decoder.give(data);
            }
            Ok(())
        })();
        // On an error (a closed pipe), the decoder's next send fails and it stops: the scope
        // does not wait for it forever.
        drop(decoded_rx);
        written
    })
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `arc cat -`: the archive read from stdin as it arrives (FORMAT.md §3.2). The files come
/// out in the archive's order, as `tar -xOf -` writes them, whatever the order of the PATHs;
/// the blocks that hold none of their bytes are read past, not decompressed. A file is written
/// once its bytes come, and a file without bytes (empty, or all holes) once the files before
/// it are written.
fn cat_stream(options: &CatOptions, stop: &Stop, out: &mut impl Write) -> Result<()> {
    use crate::archive::{Item, Stream};
    use crate::format::Index;
    use std::collections::VecDeque;
    let name = &options.archive;
    let mut select = select::Streaming::new(&options.paths, &[])?;
    let mut stream =
        Stream::new(crate::sys::stdin_for_streaming()?).with_context(|| format!("reading {name}"))?;
    // The files chosen, in order, not yet written whole; the first's bytes written so far.
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut at = 0u64;
    // Copies (FORMAT.md §4.8) in their source's record: their bytes come with the source's,
    // before their turn, and are held until it comes, within COPIES_HELD bytes in all.
    let mut held: std::collections::HashMap<usize, Vec<u8>> = std::collections::HashMap::new();
    let mut holding = 0u64;
    let mut data = Vec::new();
    let zeros = |out: &mut dyn Write, mut n: u64| -> Result<()> {
        while n > 0 {
            let now = n.min(ZEROS.len() as u64) as usize;
            out.write_all(&ZEROS[..now]).context("writing to stdout")?;
            n -= now as u64;
        }
        Ok(())
    };
    // Writes the files at the head of the queue that have no bytes to wait for (or whose
    // bytes are held).
    let ready = |out: &mut dyn Write,
                 queue: &mut VecDeque<usize>,
                 held: &mut std::collections::HashMap<usize, Vec<u8>>,
                 holding: &mut u64,
                 index: &Index|
     -> Result<()> {
        while let Some(&i) = queue.front() {
            if index.copy_source(i).is_some() {
                match held.get(&i) {
                    Some(bytes) if bytes.len() as u64 == index.entries[i].size() => {
                        out.write_all(bytes).context("writing to stdout")?
                    }
                    _ => break,
                }
                held.remove(&i);
                *holding -= index.entries[i].size();
            } else if index.stored(i) > 0 {
                break;
            } else {
                zeros(out, index.entries[i].size())?;
            }
            queue.pop_front();
        }
        Ok(())
    };
    loop {
        stop.check()?;
        let item = stream.next_item().with_context(|| format!("reading {name}"))?;
        let index = stream.index();
        match item {
            Item::Entries(range) => {
                select.decide(index, range.clone());
                for i in range.clone().filter(|&i| select.selected[i] == crate::select::Selected::Yes) {
                    let named = index.entries[i]
                        .parent()
                        .map_or(true, |p| select.selected[p as usize] != crate::select::Selected::Yes);
                    match index.entries[i].kind() {
                        Kind::File { size } if index.copy_source(i).is_some() => {
                            let source = index.copy_source(i).unwrap_or_default() as usize;
                            if source < range.start || holding + size > COPIES_HELD {
                                bail!(
                                    "reading {name}: {} has the contents of {}, whose bytes came before \
                                     it; arc cat it from the archive file",
                                    text_of(&index.path(i)),
                                    text_of(&index.path(source))
                                );
                            }
                            holding += size;
                            queue.push_back(i);
                        }
                        Kind::File { .. } => queue.push_back(i),
                        Kind::HardLink { target } if named => bail!(
                            "reading {name}: {} is a hard link to {}, whose bytes came before it; \
                             arc cat it from the archive file",
                            text_of(&index.path(i)),
                            text_of(&index.path(target as usize))
                        ),
                        Kind::Symlink { .. } if named => {
                            bail!(
                                "reading {name}: {} is a symlink (to {}); arc cat writes files",
                                text_of(&index.path(i)),
                                text_of(index.target(i))
                            )
                        }
                        Kind::Fifo | Kind::CharDevice { .. } | Kind::BlockDevice { .. } if named => {
                            bail!(
                                "reading {name}: {} is a FIFO or a device; arc cat writes files",
                                text_of(&index.path(i))
                            )
                        }
                        _ => {}
                    }
                }
                ready(out, &mut queue, &mut held, &mut holding, index)?;
            }
            Item::Block(b, frame) => {
                let chosen = |entry: u32| {
                    select.selected[entry as usize] == crate::select::Selected::Yes
                        && matches!(index.entries[entry as usize].kind(), Kind::File { .. })
                };
                let pieces: Vec<_> = index.files_in(b).filter(|p| chosen(p.entry)).collect();
                if pieces.is_empty() {
                    continue;
                }
                crate::format::decode_block(&index.blocks[b], &frame, &mut data).with_context(|| {
                    format!(
                        "reading {name}: damaged data of {}",
                        text_of(&index.path(pieces[0].entry as usize))
                    )
                })?;
                for piece in pieces {
                    let i = piece.entry as usize;
                    if index.copy_source(i).is_some() {
                        let bytes = &data[piece.start_in_block..piece.start_in_block + piece.len];
                        held.entry(i).or_default().extend_from_slice(bytes);
                        continue;
                    }
                    ready(out, &mut queue, &mut held, &mut holding, index)?;
                    // Files come in the order of their bytes: this one is the first waiting.
                    anyhow::ensure!(queue.front() == Some(&i), "reading {name}: the files came out of order");
                    let bytes = &data[piece.start_in_block..piece.start_in_block + piece.len];
                    for (file_offset, range) in file_writes(index.extents(i), piece.file_offset, piece.len) {
                        zeros(out, file_offset.saturating_sub(at))?;
                        out.write_all(&bytes[range.clone()]).context("writing to stdout")?;
                        at = file_offset + range.len() as u64;
                    }
                    if piece.file_offset + piece.len as u64 == index.stored(i) {
                        // The file's last bytes: then the holes after them, to its size.
                        zeros(out, index.entries[i].size().saturating_sub(at))?;
                        queue.pop_front();
                        at = 0;
                    }
                }
                ready(out, &mut queue, &mut held, &mut holding, index)?;
            }
            Item::End => break,
        }
    }
    select.missed().with_context(|| format!("reading {name}"))
}
