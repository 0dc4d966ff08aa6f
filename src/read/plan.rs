//! Read planning, without I/O: what each selected entry is to become given what DEST holds,
//! and which blocks to decompress for which pieces of which files.
//!
//! The per-block work is not built up front: [`Plan`] keeps only the list of needed blocks and
//! the files that span blocks, and [`Plan::pieces`] lists a block's pieces when a worker
//! takes that block, through the index's one block→files lookup.

use std::collections::HashMap;

use rustix::fs::FileType;

use super::Existing;
use crate::format::{FilePiece, Index, Kind};

/// What extraction does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not selected, kept as it is in DEST, or beneath such an entry.
    Skip,
    /// Nothing there yet: create.
    Create,
    /// A directory that exists already: merge into it.
    Merge,
    /// Something there to be replaced (`--overwrite`).
    Replace,
}

/// The outcome of looking at an entry's place in DEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Act(Action),
    /// Something is there and the user did not say what to do: refuse the whole read.
    Conflict,
    /// `--overwrite` never replaces a directory with a non-directory.
    WouldReplaceDir,
}

/// What to do with an entry whose parent is merged, given what `found` at its name in DEST
/// (`None`: nothing).
pub fn decide(entry_is_dir: bool, found: Option<FileType>, existing: Existing) -> Decision {
    match found {
        None => Decision::Act(Action::Create),
        Some(FileType::Directory) if entry_is_dir => Decision::Act(Action::Merge),
        Some(found) => match existing {
            Existing::Refuse => Decision::Conflict,
            Existing::Keep => Decision::Act(Action::Skip),
            Existing::Overwrite if found == FileType::Directory => Decision::WouldReplaceDir,
            Existing::Overwrite => Decision::Act(Action::Replace),
        },
    }
}

/// What an entry's action is when its parent's is `parent` (`None` for a root, whose parent
/// DEST is always merged into); `None` when DEST must be looked at.
pub fn inherited(parent: Option<Action>) -> Option<Action> {
    match parent.unwrap_or(Action::Merge) {
        Action::Skip => Some(Action::Skip),
        // A new directory holds nothing yet.
        Action::Create | Action::Replace => Some(Action::Create),
        Action::Merge => None,
    }
}

/// Whether `action` makes the entry.
pub fn creates(action: Action) -> bool {
    matches!(action, Action::Create | Action::Replace)
}

/// Files whose data goes to one of their hard links, by file entry: a file this extraction
/// does not create (not selected, kept, stripped) has its data written to the first hard link
/// to it that it creates; the later links are made to that one.
pub fn holders(index: &Index, actions: &[Action]) -> HashMap<u32, u32> {
    let mut holders = HashMap::new();
    for (i, entry) in index.entries.iter().enumerate() {
        if let Kind::HardLink { target } = entry.kind() {
            if creates(actions[i]) && !creates(actions[target as usize]) {
                holders.entry(target).or_insert(i as u32);
            }
        }
    }
    holders
}

/// Where hard link `i` is made from: its file, or the link that holds the file's data.
pub fn link_source(index: &Index, actions: &[Action], holders: &HashMap<u32, u32>, i: usize) -> Option<u32> {
    let Kind::HardLink { target } = index.entries[i].kind() else { return None };
    match holders.get(&target) {
        Some(&holder) if holder == i as u32 => None,
        Some(&holder) => Some(holder),
        None if creates(actions[target as usize]) => Some(target),
        None => None,
    }
}

/// The file work of an extraction.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Blocks that hold bytes of a wanted file, in archive order.
    pub blocks: Vec<usize>,
    /// Wanted files without bytes in the data stream: created empty (or all holes), no block
    /// read.
    pub empty: Vec<u32>,
    /// Wanted files whose bytes span several blocks, by entry: (entry, number of blocks).
    pub spans: Vec<(u32, usize)>,
    /// See [`holders`].
    pub holders: HashMap<u32, u32>,
}

impl Plan {
    /// The plan for the files (and hard links holding data) whose action creates or replaces
    /// them.
    pub fn new(index: &Index, actions: &[Action]) -> Plan {
        let mut plan = Plan { holders: holders(index, actions), ..Plan::default() };
        let mut needed = vec![false; index.blocks.len()];
        for i in 0..index.entries.len() {
            if !plan.writes(index, actions, i) {
                continue;
            }
            let range = index.data_entry(i).map_or(0..0, |d| index.blocks_of(d));
            match range.len() {
                0 => plan.empty.push(i as u32),
                1 => {}
                n => plan.spans.push((i as u32, n)),
            }
            needed[range].fill(true);
        }
        plan.blocks = (0..needed.len()).filter(|&b| needed[b]).collect();
        plan
    }

    /// Whether entry `i` gets file contents written: a regular file extraction creates, or a
    /// hard link that holds its file's data.
    pub fn writes(&self, index: &Index, actions: &[Action], i: usize) -> bool {
        match index.entries[i].kind() {
            Kind::File { .. } => creates(actions[i]),
            Kind::HardLink { target } => self.holders.get(&target) == Some(&(i as u32)),
            _ => false,
        }
    }

    /// The pieces of wanted files that block `b` holds, each for the entry that writes it.
    pub fn pieces<'a>(
        &'a self,
        index: &'a Index,
        actions: &'a [Action],
        b: usize,
    ) -> impl Iterator<Item = FilePiece> + 'a {
        index.files_in(b).filter_map(move |piece| {
            let file = piece.entry;
            let writer = match creates(actions[file as usize]) {
                true => file,
                false => *self.holders.get(&file)?,
            };
            Some(FilePiece { entry: writer, ..piece })
        })
    }

    /// Where `entry` is in [`Plan::spans`], if it spans blocks.
    pub fn span_of(&self, entry: u32) -> Option<usize> {
        self.spans.binary_search_by_key(&entry, |&(e, _)| e).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::spanning_index as index;

    #[test]
    fn everything_wanted() {
        let index = index();
        let actions =
            [Action::Merge, Action::Create, Action::Create, Action::Create, Action::Replace, Action::Create];
        let plan = Plan::new(&index, &actions);
        assert_eq!(
            plan,
            Plan { blocks: vec![0, 1, 2], empty: vec![2], spans: vec![(3, 3)], ..Plan::default() }
        );
        assert_eq!(plan.span_of(3), Some(0));
        assert_eq!(plan.span_of(1), None);
        let entries = |b| plan.pieces(&index, &actions, b).map(|p| p.entry).collect::<Vec<_>>();
        assert_eq!((entries(0), entries(1), entries(2)), (vec![1, 3], vec![3], vec![3, 4]));
    }

    #[test]
    fn only_the_blocks_of_wanted_files() {
        let index = index();
        // Only d: one block, which also holds the end of c, which is not wanted.
        let mut actions = [Action::Skip; 6];
        actions[4] = Action::Create;
        let plan = Plan::new(&index, &actions);
        assert_eq!(plan, Plan { blocks: vec![2], ..Plan::default() });
        let pieces: Vec<FilePiece> = plan.pieces(&index, &actions, 2).collect();
        assert_eq!(pieces.len(), 1);
        assert_eq!(
            (pieces[0].entry, pieces[0].start_in_block, pieces[0].len, pieces[0].whole),
            (4, 1, 2, true)
        );
        // A merged or kept file is not written at all.
        actions[4] = Action::Merge;
        assert_eq!(Plan::new(&index, &actions), Plan::default());
    }

    #[test]
    fn decisions_follow_the_existing_policy() {
        use Decision::*;
        let file = Some(FileType::RegularFile);
        let dir = Some(FileType::Directory);
        assert_eq!(decide(false, None, Existing::Refuse), Act(Action::Create));
        assert_eq!(decide(true, dir, Existing::Refuse), Act(Action::Merge));
        assert_eq!(decide(false, file, Existing::Refuse), Conflict);
        assert_eq!(decide(false, file, Existing::Keep), Act(Action::Skip));
        assert_eq!(decide(false, file, Existing::Overwrite), Act(Action::Replace));
        assert_eq!(decide(true, Some(FileType::Symlink), Existing::Overwrite), Act(Action::Replace));
        assert_eq!(decide(false, dir, Existing::Overwrite), WouldReplaceDir);
        assert_eq!(decide(false, dir, Existing::Keep), Act(Action::Skip));
        assert_eq!(inherited(None), None);
        assert_eq!(inherited(Some(Action::Replace)), Some(Action::Create));
        assert_eq!(inherited(Some(Action::Skip)), Some(Action::Skip));
        assert_eq!(inherited(Some(Action::Merge)), None);
    }
}
