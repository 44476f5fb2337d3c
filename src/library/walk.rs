//! The one directory walker of the core: the library scan, the read-only stores' scans, the
//! polling verifier and the details panel's file list all walk with it. Read-only; owns no
//! state between walks and knows nothing of models.
//!
//! Each folder is opened relative to its parent's handle (`openat` with `O_NOFOLLOW`, so a
//! folder swapped for a link is not entered), read once (into one buffer for the whole walk:
//! no allocation per folder or per name), and each entry is stat-ed once
//! relative to that handle (`fstatat`, no path built, links not followed). A link is
//! stat-ed a second time through it only to measure a link to a regular file (a symlink
//! import) as that file; folders behind links are never descended. Entries that vanish
//! mid-walk are skipped; whatever else cannot be read is reported in [`WalkReport::errors`]
//! and the walk goes on.

use std::ffi::{CStr, OsStr};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// What an entry is (links not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A folder (descended unless deeper than [`WalkOptions::max_depth`]).
    Dir,
    /// A symbolic link; `to_file` says whether it leads to a regular file.
    Link {
        /// The link resolves to a regular file (its size is that file's).
        to_file: bool,
    },
    /// Anything else (a socket, a device, a fifo).
    Other,
}

/// One entry met by [`walk`].
#[derive(Debug)]
pub struct Entry<'a> {
    /// The folder it is in, relative to the walked root (empty for the root itself).
    pub dir: &'a Path,
    /// Its name.
    pub name: &'a OsStr,
    /// What it is.
    pub kind: EntryKind,
    /// Apparent size: the file's, the linked file's for a link to a regular file, else
    /// the entry's own.
    pub size: u64,
    /// Modification time of the entry itself (a link's own), in seconds since the epoch.
    pub mtime: f64,
}

impl Entry<'_> {
    /// The entry's path relative to the walked root (allocates; call only when needed).
    pub fn rel_path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    /// Whether this entry is `rel` (a path relative to the root), without allocating.
    pub fn is(&self, rel: &RelPath<'_>) -> bool {
        rel.name == Some(self.name) && rel.dir == self.dir
    }
}

/// A path relative to a walk's root, split once into its folder and name so that entries
/// are matched against it without parsing it again ([`Entry::is`]).
#[derive(Debug, Clone, Copy)]
pub struct RelPath<'a> {
    dir: &'a Path,
    name: Option<&'a OsStr>,
}

impl<'a> RelPath<'a> {
    /// `rel` split (a path without a last name, such as `..`, matches no entry).
    pub fn new(rel: &'a Path) -> Self {
        RelPath {
            dir: rel.parent().unwrap_or(Path::new("")),
            name: rel.file_name(),
        }
    }
}

/// How to walk.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    /// Folders at this depth are reported but not descended (and an error says so).
    pub max_depth: usize,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions { max_depth: 64 }
    }
}

/// What a walk found besides the entries it reported.
#[derive(Debug, Default)]
pub struct WalkReport {
    /// The root did not exist.
    pub missing: bool,
    /// Modification time of the root folder itself.
    pub root_mtime: Option<f64>,
    /// What could not be read, one line each, naming the path.
    pub errors: Vec<String>,
}

/// Seconds since the epoch of a stat's modification time (the arithmetic of
/// `Duration::as_secs_f64`, so figures from here and from `std` compare equal).
fn mtime(st: &rustix::fs::Stat) -> f64 {
    st.st_mtime as f64 + st.st_mtime_nsec as f64 / 1_000_000_000.0
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Walks `root` (links not followed), calling `visit` once per entry below it, parents
/// before their children. A root that is a link or not a folder is an error in the report.
pub fn walk(root: &Path, options: WalkOptions, visit: &mut dyn FnMut(&Entry<'_>)) -> WalkReport {
    let opened = faults::open_dir(root, || rustix::fs::open(root, DIR_FLAGS, Mode::empty()));
    walk_opened(opened, root, options, visit)
}

/// What `rel` (a path relative to the open folder `parent`; links not followed, a link to
/// a regular file measured as that file) is now: the kind, size and modification time a
/// walk would report for it.
pub fn entry_at(
    parent: BorrowedFd<'_>,
    rel: &std::ffi::CStr,
) -> Result<(EntryKind, u64, f64), Errno> {
    let st = rustix::fs::statat(parent, rel, AtFlags::SYMLINK_NOFOLLOW)?;
    let (kind, size) = classify(parent, rel, &st);
    Ok((kind, size, mtime(&st)))
}

/// Modification time of `name` in the open folder `parent`, links not followed.
pub fn mtime_at(parent: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<f64> {
    Ok(mtime(&rustix::fs::statat(
        parent,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// Modification time of `path`, links not followed.
pub fn mtime_of(path: &Path) -> std::io::Result<f64> {
    Ok(mtime(&rustix::fs::lstat(path)?))
}

/// Opens a folder to walk in (not through a link).
pub fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, DIR_FLAGS, Mode::empty())?)
}

/// [`walk`] of the folder `name` inside the open folder `parent` (whose path is
/// `root`'s parent): the folder is opened relative to that handle, so no path is looked
/// up again from `/` (a scan walks every model folder of one open `models/`).
pub fn walk_in(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    root: &Path,
    options: WalkOptions,
    visit: &mut dyn FnMut(&Entry<'_>),
) -> WalkReport {
    let opened = faults::open_dir(root, || {
        rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty())
    });
    walk_opened(opened, root, options, visit)
}

fn walk_opened(
    opened: Result<OwnedFd, Errno>,
    root: &Path,
    options: WalkOptions,
    visit: &mut dyn FnMut(&Entry<'_>),
) -> WalkReport {
    let mut report = WalkReport::default();
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            report.missing = true;
            return report;
        }
        Err(e) => {
            report.errors.push(cannot_read(root, e));
            return report;
        }
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) => report.root_mtime = Some(mtime(&st)),
        Err(e) => report.errors.push(cannot_read(root, e)),
    }
    let mut stack: Vec<(OwnedFd, PathBuf, usize)> = vec![(fd, PathBuf::new(), 0)];
    // One buffer of directory entries for every folder of the walk (read one at a time).
    let mut buf = [MaybeUninit::<u8>::uninit(); NAMES_BUFFER];
    while let Some((dir, rel, depth)) = stack.pop() {
        let folder = Folder {
            root,
            rel: &rel,
            depth,
            options,
        };
        folder.read(dir.as_fd(), &mut buf, visit, &mut report, &mut stack);
    }
    report
}

/// Bytes of directory entries read at once (glibc's `readdir` reads as many).
const NAMES_BUFFER: usize = 32 * 1024;

/// One folder of a walk being read.
struct Folder<'a> {
    root: &'a Path,
    rel: &'a Path,
    depth: usize,
    options: WalkOptions,
}

impl Folder<'_> {
    /// Reads the folder open as `dir`: each entry stat-ed and visited, subfolders opened
    /// (relative to `dir`) and pushed on `stack`.
    fn read(
        &self,
        dir: BorrowedFd<'_>,
        buf: &mut [MaybeUninit<u8>],
        visit: &mut dyn FnMut(&Entry<'_>),
        report: &mut WalkReport,
        stack: &mut Vec<(OwnedFd, PathBuf, usize)>,
    ) {
        let read = for_each_name(dir, buf, &mut |name| {
            self.entry(dir, name, visit, report, stack)
        });
        if let Err(e) = read {
            report
                .errors
                .push(cannot_read(&self.root.join(self.rel), e));
        }
    }

    /// The entry `c_name` of the folder open as `dir`: stat-ed, visited and, if a folder,
    /// opened and pushed on `stack`.
    fn entry(
        &self,
        dir: BorrowedFd<'_>,
        c_name: &CStr,
        visit: &mut dyn FnMut(&Entry<'_>),
        report: &mut WalkReport,
        stack: &mut Vec<(OwnedFd, PathBuf, usize)>,
    ) {
        let Folder {
            root, rel, depth, ..
        } = *self;
        let name = OsStr::from_bytes(c_name.to_bytes());
        let here = || root.join(rel).join(name);
        let st = match faults::stat(&here, || {
            rustix::fs::statat(dir, c_name, AtFlags::SYMLINK_NOFOLLOW)
        }) {
            Ok(st) => st,
            Err(Errno::NOENT) => return, // vanished since the folder was read
            Err(e) => {
                report.errors.push(cannot_read(&here(), e));
                return;
            }
        };
        let (kind, size) = classify(dir, c_name, &st);
        visit(&Entry {
            dir: rel,
            name,
            kind,
            size,
            mtime: mtime(&st),
        });
        if kind != EntryKind::Dir {
            return;
        }
        if depth + 1 >= self.options.max_depth {
            report.errors.push(format!(
                "{} is nested too deeply; not scanned",
                here().display()
            ));
            return;
        }
        let opened = faults::open_dir(&here(), || {
            rustix::fs::openat(dir, c_name, DIR_FLAGS, Mode::empty())
        });
        match opened {
            Ok(fd) => stack.push((fd, rel.join(name), depth + 1)),
            Err(Errno::NOENT) => {} // vanished
            Err(e) => report.errors.push(cannot_read(&here(), e)),
        }
    }
}

/// Calls `each` with the name of every entry of the open folder `dir` but `.` and `..`,
/// reading the entries into `buf` (no allocation per folder or per name). A folder removed
/// since it was opened has no entries left (`getdents` says `ENOENT`; `readdir` calls that
/// the end too); an interrupted read is read again.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn for_each_name(
    dir: BorrowedFd<'_>,
    buf: &mut [MaybeUninit<u8>],
    each: &mut dyn FnMut(&CStr),
) -> Result<(), Errno> {
    let mut names = rustix::fs::RawDir::new(dir, buf);
    while let Some(entry) = names.next() {
        let entry = match entry {
            Ok(entry) => entry,
            // Nothing was taken from the buffer: the next call reads again.
            Err(Errno::INTR) => continue,
            Err(Errno::NOENT) => break,
            Err(e) => return Err(e),
        };
        let name = entry.file_name();
        if name != c"." && name != c".." {
            each(name);
        }
    }
    Ok(())
}

/// Calls `each` with the name of every entry of the open folder `dir` but `.` and `..`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn for_each_name(
    dir: BorrowedFd<'_>,
    _: &mut [MaybeUninit<u8>],
    each: &mut dyn FnMut(&CStr),
) -> Result<(), Errno> {
    let mut names = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = names.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            each(name);
        }
    }
    Ok(())
}

/// What an entry is, from its own `stat` (links not followed), and its measured size: a
/// link is stat-ed through once more, only to measure a link to a regular file as that file.
fn classify(dir: BorrowedFd<'_>, name: &std::ffi::CStr, st: &rustix::fs::Stat) -> (EntryKind, u64) {
    let own = st.st_size as u64;
    match FileType::from_raw_mode(st.st_mode as _) {
        FileType::RegularFile => (EntryKind::File, own),
        FileType::Directory => (EntryKind::Dir, own),
        FileType::Symlink => {
            let through = rustix::fs::statat(dir, name, AtFlags::empty())
                .ok()
                .filter(|t| FileType::from_raw_mode(t.st_mode as _) == FileType::RegularFile);
            let to_file = through.is_some();
            (
                EntryKind::Link { to_file },
                through.map_or(own, |t| t.st_size as u64),
            )
        }
        _ => (EntryKind::Other, own),
    }
}

fn cannot_read(path: &Path, e: Errno) -> String {
    format!(
        "cannot read {}: {}",
        path.display(),
        std::io::Error::from(e)
    )
}

/// Test-only faults planted on exact paths (a folder that cannot be read, an entry that
/// vanishes between the folder's read and its stat). In other builds these are the plain
/// calls.
#[cfg(not(test))]
mod faults {
    use std::path::{Path, PathBuf};

    use rustix::fd::OwnedFd;
    use rustix::io::Errno;

    pub fn open_dir(
        _: &Path,
        open: impl FnOnce() -> Result<OwnedFd, Errno>,
    ) -> Result<OwnedFd, Errno> {
        open()
    }

    pub fn stat<T>(
        _: &dyn Fn() -> PathBuf,
        stat: impl FnOnce() -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        stat()
    }
}

#[cfg(test)]
pub(crate) mod faults {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use rustix::fd::OwnedFd;
    use rustix::io::Errno;

    /// A fault planted on one exact path.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// Opening this folder fails with permission denied.
        DenyReadDir,
        /// The entry is deleted right after its folder was read.
        VanishAfterListing,
    }

    static FAULTS: Mutex<Vec<(PathBuf, Fault)>> = Mutex::new(Vec::new());

    pub fn plant(path: &Path, fault: Fault) {
        FAULTS.lock().unwrap().push((path.to_path_buf(), fault));
    }

    fn planted(path: &Path, fault: Fault) -> bool {
        FAULTS
            .lock()
            .unwrap()
            .iter()
            .any(|(p, f)| p == path && *f == fault)
    }

    pub fn open_dir(
        path: &Path,
        open: impl FnOnce() -> Result<OwnedFd, Errno>,
    ) -> Result<OwnedFd, Errno> {
        if planted(path, Fault::DenyReadDir) {
            return Err(Errno::ACCESS);
        }
        open()
    }

    pub fn stat<T>(
        path: &dyn Fn() -> PathBuf,
        stat: impl FnOnce() -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let path = path();
        if planted(&path, Fault::VanishAfterListing) {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
        stat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn collect(root: &Path) -> (Vec<(PathBuf, EntryKind, u64)>, WalkReport) {
        let mut seen = Vec::new();
        let report = walk(root, WalkOptions::default(), &mut |e| {
            seen.push((e.rel_path(), e.kind, e.size))
        });
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        (seen, report)
    }

    #[test]
    fn a_folder_removed_after_it_was_opened_has_no_entries_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        fs::create_dir(&gone).unwrap();
        let fd = open_dir(&gone).unwrap();
        fs::remove_dir(&gone).unwrap();
        let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
        let mut names = Vec::new();
        let read = for_each_name(fd.as_fd(), &mut buf, &mut |n| names.push(n.to_owned()));
        assert_eq!(read, Ok(()));
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_folder_of_more_entries_than_one_read_holds_is_walked_whole() {
        // ~96 bytes of directory entry each: several reads of the entries buffer, with a
        // subfolder among them whose own entries are read into the same buffer.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("m");
        fs::create_dir_all(root.join("sub")).unwrap();
        let count = 3 * NAMES_BUFFER / 96;
        for i in 0..count {
            fs::write(root.join(format!("{i:0>64}.bin")), b"12").unwrap();
        }
        fs::write(root.join("sub/inner"), b"123").unwrap();
        let (seen, report) = collect(&root);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(
            seen.len(),
            count + 2,
            "every file, the subfolder and its file"
        );
        let files: u64 = seen
            .iter()
            .filter(|s| s.1 == EntryKind::File)
            .map(|s| s.2)
            .sum();
        assert_eq!(files, 2 * count as u64 + 3);
    }

    #[test]
    fn entries_are_stat_ed_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("m");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a.bin"), b"1234").unwrap();
        fs::write(root.join("sub/b"), b"12").unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("big"), vec![0u8; 100]).unwrap();
        std::os::unix::fs::symlink(outside.join("big"), root.join("to-file")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("to-dir")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nothing"), root.join("dangling")).unwrap();

        let (seen, report) = collect(&root);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.root_mtime.is_some() && !report.missing);
        let get = |p: &str| seen.iter().find(|s| s.0 == Path::new(p)).unwrap();
        assert_eq!(get("a.bin").1, EntryKind::File);
        assert_eq!(get("a.bin").2, 4);
        assert_eq!(get("sub").1, EntryKind::Dir);
        assert_eq!(get("sub/b").2, 2);
        assert_eq!(get("to-file").1, EntryKind::Link { to_file: true });
        assert_eq!(
            get("to-file").2,
            100,
            "a link to a file is measured as the file"
        );
        assert_eq!(get("to-dir").1, EntryKind::Link { to_file: false });
        assert_eq!(get("dangling").1, EntryKind::Link { to_file: false });
        assert!(
            !seen
                .iter()
                .any(|s| s.0.starts_with("to-dir") && s.0 != Path::new("to-dir")),
            "a folder behind a link is never descended"
        );
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn a_missing_root_or_a_root_that_is_a_link_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let (seen, report) = collect(&dir.path().join("missing"));
        assert!(seen.is_empty() && report.missing && report.errors.is_empty());
        fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let (seen, report) = collect(&dir.path().join("link"));
        assert!(seen.is_empty() && !report.missing);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    }

    #[test]
    fn too_deep_folders_are_reported_not_descended() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        fs::write(dir.path().join("a/b/c/deep"), b"x").unwrap();
        let mut seen = Vec::new();
        let report = walk(dir.path(), WalkOptions { max_depth: 2 }, &mut |e| {
            seen.push(e.rel_path())
        });
        assert_eq!(seen, vec![PathBuf::from("a"), PathBuf::from("a/b")]);
        assert_eq!(report.errors.len(), 1);
        assert!(
            report.errors[0].contains("nested too deeply"),
            "{:?}",
            report.errors
        );
    }

    #[test]
    fn an_entry_knows_its_relative_path_without_allocating() {
        let e = Entry {
            dir: Path::new("shards"),
            name: OsStr::new("part-001.bin"),
            kind: EntryKind::File,
            size: 1,
            mtime: 0.0,
        };
        let is = |e: &Entry<'_>, rel: &str| e.is(&RelPath::new(Path::new(rel)));
        assert!(is(&e, "shards/part-001.bin"));
        assert!(!is(&e, "part-001.bin"));
        assert!(!is(&e, "other/part-001.bin"));
        assert!(!is(&e, "shards/.."));
        let top = Entry {
            dir: Path::new(""),
            ..e
        };
        assert!(is(&top, "part-001.bin"));
        assert!(!is(&top, ""));
    }
}
