//! Salvage: what can be recovered of a damaged or cut archive (`arc read --salvage`, and the
//! estimate `arc verify` gives of it).
//!
//! With its index intact, an archive is salvaged by its index: every block is checked, and the
//! files whose bytes lie in a damaged one are left out. With its index, trailer or end lost,
//! it is read from the front by its records (FORMAT.md §3.2): each record's head is checked,
//! its entries joined to those before (`format::join_runs`) as long as the records follow each
//! other, and each block is checked against its record; the index so rebuilt is checked like
//! any other. A block cut short by the end of the file gives what decompresses of it: a cut
//! changes no byte before it.
//!
//! Either way the result is an index of the entries that can be recovered whole (files whose
//! every stored byte is in a sound block, links to them, and every other entry), built with
//! `Keep::Only`, and the list of what was lost, with why.

use std::fs::File;
use std::io::Read;

use anyhow::Result;

use super::read_up_to;
use crate::format::{self, Budget, FormatError, Index, IndexRecord, Keep, Kind, RecordHead};

/// How much of a block can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sound {
    /// All of it: its checksum matches.
    Whole,
    /// Its first bytes (the end of the file cut it): how many decompressed.
    Start(u64),
    /// None: damaged.
    Lost,
    /// None: it stands for the bytes of files that run past the end of what was found.
    Missing,
}

/// What a salvage found.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// Entries the index or the records told of.
    pub found: usize,
    /// Entries that cannot be recovered whole: (path, why).
    pub lost: Vec<(Vec<u8>, &'static str)>,
    /// What is damaged, in words, first things first.
    pub damage: Vec<String>,
}

/// The index of what can be recovered, the start of the block cut short with what
/// decompressed of it, the report, and where the region of records and blocks ends.
pub struct Salvage {
    pub index: Index,
    pub cut: Option<(u64, Vec<u8>)>,
    pub report: Salvaged,
    pub data_end: u64,
}

/// Salvages the archive in `file` (`len` bytes long), within `budget`.
pub fn salvage(file: &File, len: u64, budget: &mut Budget) -> Result<Salvage> {
    let intact = super::read_index(file, |_| Vec::new());
    let (found, sound, cut, mut damage, data_end) = match intact {
        Ok((index, _, version, data_end)) => {
            if version < 2 {
                // Nothing to read from the front; the index is all there is.
                let sound = vec![Sound::Whole; index.blocks.len()];
                (index, sound, None, Vec::new(), data_end)
            } else {
                let (sound, damage) = check_blocks(file, &index)?;
                (index, sound, None, damage, data_end)
            }
        }
        Err(why) => {
            let mut damage = vec![format!("{why:#}")];
            let (found, sound, cut, more, data_end) = from_records(file, len, budget)?;
            damage.extend(more);
            (found, sound, cut, damage, data_end)
        }
    };
    let lost = lost_entries(&found, &sound);
    let report = Salvaged {
        found: found.entries.len(),
        lost: lost.iter().map(|&(e, why)| (found.path(e), why)).collect(),
        damage: std::mem::take(&mut damage),
    };
    if lost.is_empty() {
        return Ok(Salvage { index: found, cut, report, data_end });
    }
    let lost_set: Vec<u32> = lost.iter().map(|&(e, _)| e as u32).collect();
    let keep: Vec<u32> =
        (0..found.entries.len() as u32).filter(|e| lost_set.binary_search(e).is_err()).collect();
    let index = rebuild(&found, &keep, data_end)?;
    Ok(Salvage { index, cut, report, data_end })
}

/// Every block of an archive whose index is intact, its checksum checked.
fn check_blocks(file: &File, index: &Index) -> Result<(Vec<Sound>, Vec<String>)> {
    let mut frame = Vec::new();
    let mut sound = Vec::with_capacity(index.blocks.len());
    let mut damage = Vec::new();
    for block in &index.blocks {
        frame.resize(block.len as usize, 0);
        let read = read_up_to(file, &mut frame, block.offset)?;
        if read == frame.len() && format::block_hash(&frame) == block.hash {
            sound.push(Sound::Whole);
        } else {
            damage.push(format!("block at byte {}: checksum mismatch", block.offset));
            sound.push(Sound::Lost);
        }
    }
    Ok((sound, damage))
}

/// The archive read from the front by its records, as far as they follow each other: the
/// index they make, how sound each block is, the block cut short, what is damaged, and where
/// the region of records and blocks ends.
#[allow(clippy::type_complexity)]
fn from_records(
    file: &File,
    len: u64,
    budget: &mut Budget,
) -> Result<(Index, Vec<Sound>, Option<(u64, Vec<u8>)>, Vec<String>, u64)> {
    let mut header = [0u8; format::HEADER_LEN as usize];
    let got = read_up_to(file, &mut header, 0)?;
    if format::decode_header(&header[..got])? < 2 {
        anyhow::bail!("format 1 has no records to salvage from");
    }
    let mut runs: Vec<(RecordHead, u64, IndexRecord)> = Vec::new();
    let mut sound = Vec::new();
    let mut damage = Vec::new();
    let mut cut = None;
    let mut final_len = None;
    let mut at = format::HEADER_LEN;
    let mut entries = 0u64;
    let mut buf = Vec::new();
    loop {
        let mut head = [0u8; 8];
        let got = read_up_to(file, &mut head, at)?;
        if got == 0 {
            damage.push(format!("the archive ends at byte {at}, before its final record"));
            break;
        }
        let Some(record_len) = format::record_len(&head[..got]) else {
            damage.push(format!("no record at byte {at}"));
            break;
        };
        buf.resize(record_len.min(len.saturating_sub(at)) as usize, 0);
        let got = read_up_to(file, &mut buf, at)?;
        buf.truncate(got);
        let decoded = format::decode_record(&buf).and_then(|(head, cbor)| {
            if head.first_entry != entries || head.block != sound.len() as u64 {
                return Err(format::corrupt("it does not follow the record before"));
            }
            let run = format::decode_record_entries(&head, cbor, budget)?.record(budget)?;
            Ok((head, run))
        });
        let (head, run) = match decoded {
            Ok(decoded) => decoded,
            Err(FormatError::Truncated(_)) => {
                damage.push(format!("the archive ends at byte {len}, inside the record at byte {at}"));
                break;
            }
            Err(why) => {
                damage.push(format!("record at byte {at}: {}", why.words()));
                break;
            }
        };
        entries += run.names.len() as u64;
        at += record_len;
        if head.is_final() {
            runs.push((head, record_len, run));
            final_len = Some(record_len);
            break;
        }
        // The block after the record, as long as the record says, as much of it as is there.
        let block_at = at;
        buf.resize(head.block_len as usize, 0);
        let got = read_up_to(file, &mut buf, block_at)?;
        let state = if got == buf.len() {
            if format::block_hash(&buf) == head.block_hash {
                Sound::Whole
            } else {
                damage.push(format!("block at byte {block_at}: checksum mismatch"));
                Sound::Lost
            }
        } else {
            let start = decode_start(&buf[..got], head.block_raw_len);
            damage.push(format!("the archive ends at byte {len}, inside the block at byte {block_at}"));
            let state = Sound::Start(start.len() as u64);
            cut = Some((block_at, start));
            state
        };
        sound.push(state);
        runs.push((head, record_len, run));
        if cut.is_some() {
            break;
        }
        at += buf.len() as u64;
    }
    let mut whole = format::join_runs(runs, final_len.unwrap_or(0))?;
    // Files that run past the last block found: blocks that stand for their bytes, never read.
    let held: u64 = whole.blocks.raw_lens.iter().sum();
    let last = whole.blocks.records.pop().unwrap_or(0);
    let before = whole.blocks.lens.len();
    whole.stand_in_blocks(whole.stored_total().saturating_sub(held));
    sound.resize(sound.len() + whole.blocks.lens.len() - before, Sound::Missing);
    whole.blocks.records.push(last);
    let data_end =
        format::HEADER_LEN + whole.blocks.records.iter().sum::<u64>() + whole.blocks.lens.iter().sum::<u64>();
    let index = build(&whole, data_end, budget)?;
    Ok((index, sound, cut, damage, data_end))
}

/// The index of `record`, checked as any index is.
fn build(record: &IndexRecord, data_end: u64, budget: &mut Budget) -> Result<Index> {
    let mut cbor = Vec::new();
    ciborium::into_writer(record, &mut cbor).map_err(|e| format::corrupt(format!("index: {e}")))?;
    let packed = format::decode_cbor(&cbor, 2, budget)?;
    Ok(Index::from_packed(&packed, data_end, budget, Keep::All)?)
}

/// The index `found` with only the entries `keep` (sorted), numbered anew.
fn rebuild(found: &Index, keep: &[u32], data_end: u64) -> Result<Index> {
    let mut budget = Budget::for_archive(u64::MAX);
    let mut cbor = Vec::new();
    ciborium::into_writer(&found.as_record(), &mut cbor)
        .map_err(|e| format::corrupt(format!("index: {e}")))?;
    let packed = format::decode_cbor(&cbor, 2, &mut budget)?;
    Ok(Index::from_packed(&packed, data_end, &mut budget, Keep::Only(keep))?)
}

/// The entries that cannot be recovered whole, in order, with why: files with a stored byte
/// in a block that is not sound, and hard links to them.
fn lost_entries(index: &Index, sound: &[Sound]) -> Vec<(usize, &'static str)> {
    let mut lost = Vec::new();
    for (i, entry) in index.entries.iter().enumerate() {
        match entry.kind() {
            Kind::File { .. } => {
                let Some((start, stored)) = index.span(i) else { continue };
                let end = start + stored;
                let whole = index.blocks_of(i).all(|b| match sound[b] {
                    Sound::Whole => true,
                    Sound::Start(n) => index.blocks[b].raw_offset + n >= end,
                    Sound::Lost | Sound::Missing => false,
                });
                if !whole {
                    let damaged = index.blocks_of(i).any(|b| sound[b] == Sound::Lost);
                    lost.push((
                        i,
                        if damaged { "its data is damaged" } else { "its data lies past the end" },
                    ));
                }
            }
            Kind::HardLink { target }
                if lost.binary_search_by_key(&(target as usize), |&(e, _)| e).is_ok() =>
            {
                lost.push((i, "the file it is a link to is lost"));
            }
            _ => {}
        }
    }
    lost
}

/// The first bytes of a block cut short, as far as they decompress (at most `raw_len`).
fn decode_start(frame: &[u8], raw_len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(decoder) = zstd::stream::read::Decoder::with_buffer(frame) {
        let mut decoder = decoder.single_frame();
        let _ = decoder.window_log_max(format::MAX_WINDOW_LOG);
        // An error ends it: what came before it stays.
        let _ = decoder.take(raw_len).read_to_end(&mut out);
    }
    out
}
