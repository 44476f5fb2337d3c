//! A model folder's print: what the polling verifier saw when it last walked the folder —
//! every folder and file below it (names, kind, size, modification time) — so that later
//! passes `stat` each entry by its path relative to the open `models/` folder instead of
//! opening and reading every folder again (about half the kernel work of a walk).
//!
//! Nothing a walk would see can change unseen by a print: an entry added, removed or
//! renamed changes its folder's modification time (each folder is in the print), a file
//! written changes its size or modification time, and a link is measured through as the
//! walk measures it. A print is kept only while it matched the model's row when it was
//! taken; any difference, or a row that changed since, means a walk again. Owns its prints;
//! reads only metadata.

use std::ffi::{CStr, OsStr};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::library::model::ModelInfo;
use crate::library::walk::{Entry, EntryKind, entry_at};

/// No parent: the model folder itself.
const TOP: u32 = u32::MAX;

/// One entry of a print.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Index of the folder it is in (`TOP` for the model folder itself).
    parent: u32,
    /// Where its name ends in [`Print::names`] (it starts where the previous one ended).
    name_end: u32,
    kind: EntryKind,
    size: u64,
    mtime: f64,
}

/// What a model's row said when its print was taken.
type RowFacts = (Option<u64>, Option<u64>, Option<f64>);

/// The print of one model folder.
#[derive(Debug)]
pub(super) struct Print {
    row: RowFacts,
    /// Every entry's name, one after the other (the model folder's own first).
    names: Box<[u8]>,
    /// Parents before their children.
    marks: Box<[Mark]>,
}

fn facts(m: &ModelInfo) -> RowFacts {
    (m.size_bytes(), m.file_count(), m.modified())
}

/// Builds a print from the entries of one walk of the model folder `id`.
pub(super) struct Taker {
    names: Vec<u8>,
    marks: Vec<Mark>,
    /// Folders met so far, relative to the model folder, by index.
    folders: Vec<(PathBuf, u32)>,
}

impl Taker {
    /// Starts a print of the model folder `name` (in `models/`), whose own modification
    /// time is taken when the walk ends.
    pub fn new(name: &OsStr) -> Taker {
        Taker {
            names: name.as_bytes().to_vec(),
            marks: vec![Mark {
                parent: TOP,
                name_end: name.len() as u32,
                kind: EntryKind::Dir,
                size: 0,
                mtime: 0.0,
            }],
            folders: vec![(PathBuf::new(), 0)],
        }
    }

    /// Notes one entry the walk met (parents are met before their children).
    pub fn note(&mut self, e: &Entry<'_>) {
        let Some(&(_, parent)) = self.folders.iter().rev().find(|(p, _)| p == e.dir) else {
            return;
        };
        self.names.extend_from_slice(e.name.as_bytes());
        let index = self.marks.len() as u32;
        self.marks.push(Mark {
            parent,
            name_end: self.names.len() as u32,
            kind: e.kind,
            size: e.size,
            mtime: e.mtime,
        });
        if e.kind == EntryKind::Dir {
            self.folders.push((e.dir.join(e.name), index));
        }
    }

    /// The print, for a row that matched the walk (`root_mtime`: the model folder's own).
    pub fn finish(mut self, row: &ModelInfo, root_mtime: f64) -> Print {
        self.marks[0].mtime = root_mtime;
        Print {
            row: facts(row),
            names: self.names.into_boxed_slice(),
            marks: self.marks.into_boxed_slice(),
        }
    }
}

impl Print {
    /// Whether the print was taken against this very row (a row that changed since is
    /// walked again).
    pub fn is_for(&self, row: &ModelInfo) -> bool {
        self.row == facts(row)
    }

    fn name(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.marks[i - 1].name_end as usize
        };
        &self.names[start..self.marks[i].name_end as usize]
    }

    /// Writes entry `i`'s path relative to `models/` into `buf`, with its NUL.
    fn path_into<'b>(&self, i: usize, buf: &'b mut Vec<u8>) -> &'b CStr {
        let mut chain = [0usize; 64];
        let mut depth = 0;
        let mut at = i;
        loop {
            if depth < chain.len() {
                chain[depth] = at;
            }
            depth += 1;
            match self.marks[at].parent {
                TOP => break,
                p => at = p as usize,
            }
        }
        buf.clear();
        for (n, &j) in chain[..depth.min(chain.len())].iter().rev().enumerate() {
            if n > 0 {
                buf.push(b'/');
            }
            buf.extend_from_slice(self.name(j));
        }
        buf.push(0);
        CStr::from_bytes_with_nul(buf).unwrap_or_default()
    }

    /// Whether every entry is still as printed: one `stat` each, relative to `models`.
    pub fn holds(&self, models: BorrowedFd<'_>, buf: &mut Vec<u8>) -> bool {
        (0..self.marks.len()).all(|i| {
            let mark = self.marks[i];
            let Ok((kind, size, mtime)) = entry_at(models, self.path_into(i, buf)) else {
                return false;
            };
            kind == mark.kind
                && mtime == mark.mtime
                && (kind == EntryKind::Dir || size == mark.size)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::path::Path;

    fn row(path: &Path) -> ModelInfo {
        ModelInfo {
            provider: "p".into(),
            description: Some("".into()),
            format: Some("gguf".into()),
            figures: crate::library::model::Figures::default()
                .with_size(Some(1))
                .with_files(Some(1))
                .with_modified(Some(1.0)),
            ..ModelInfo::new("m", path)
        }
    }

    #[test]
    fn a_print_holds_until_anything_a_walk_would_see_changes() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        let m = models.join("m");
        std::fs::create_dir_all(m.join("sub/deeper")).unwrap();
        std::fs::write(m.join("w.bin"), b"abc").unwrap();
        std::fs::write(m.join("sub/deeper/x.bin"), b"12345").unwrap();
        let take = || {
            let mut taker = Taker::new(OsStr::new("m"));
            let report = crate::library::walk::walk(&m, Default::default(), &mut |e| taker.note(e));
            taker.finish(&row(&m), report.root_mtime.unwrap())
        };
        let fd = crate::library::walk::open_dir(&models).unwrap();
        let mut buf = Vec::new();
        let print = take();
        assert_eq!(print.marks.len(), 5);
        assert!(print.holds(fd.as_fd(), &mut buf));
        assert_eq!(
            print.path_into(4, &mut buf).to_bytes(),
            b"m/sub/deeper/x.bin"
        );

        // An in-place rewrite deep down (same size, later time).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(m.join("sub/deeper/x.bin"), b"54321").unwrap();
        assert!(!print.holds(fd.as_fd(), &mut buf));
        let print = take();
        assert!(print.holds(fd.as_fd(), &mut buf));
        // A file added deep down moves its folder's time.
        std::fs::write(m.join("sub/deeper/new"), b"").unwrap();
        assert!(!print.holds(fd.as_fd(), &mut buf));
        let print = take();
        // The model folder swapped for a link to an equal copy.
        let copy = dir.path().join("copy");
        std::fs::rename(&m, &copy).unwrap();
        std::os::unix::fs::symlink(&copy, &m).unwrap();
        assert!(!print.holds(fd.as_fd(), &mut buf));
    }
}
