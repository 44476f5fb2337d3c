//! File-system writes that never follow a symbolic link (a leaf of the core).
//!
//! A [`SafeDir`] is an open handle on a directory that was reached without following a
//! link: the library root is opened as the user named it (links in that path are the
//! user's choice), and every folder below it is opened relative to its parent's handle
//! with `O_NOFOLLOW | O_DIRECTORY`. Every file the app creates, appends to, truncates,
//! renames or removes is then named relative to such a handle, with no-follow semantics:
//! `openat(O_NOFOLLOW)`, `mkdirat`, `renameat`, `unlinkat`, `linkat` without
//! `AT_SYMLINK_FOLLOW`. A link standing where the app would write is refused with an error
//! saying so ([`is_link_refusal`]), and there is no window between a check and the act for
//! another process to swap a folder for a link: the check *is* the act.
//!
//! Owns no policy (which folders the library has, what may be written): that is the
//! callers'. Touches only what a caller names. Reading *sources* outside the library (an
//! import's source) is the caller's business and happens with ordinary paths.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(unix)]
use std::os::fd::OwnedFd;
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;

#[cfg(unix)]
use rustix::fs::{AtFlags, Mode, OFlags};

/// The message of every refusal to pass through a link.
const LINK_REFUSED: &str = "is a symbolic link; refusing to write through it";

/// Whether `err` is this module's refusal to write through a symbolic link.
pub fn is_link_refusal(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Other && err.to_string() == LINK_REFUSED
}

fn link_refused() -> io::Error {
    io::Error::other(LINK_REFUSED)
}

/// What stands at a name, read without following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A device, socket, fifo…
    Other,
}

/// `lstat` of one name in a [`SafeDir`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Its length in bytes (of the link itself for a link).
    pub len: u64,
    /// Device and inode: the identity of the file.
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory reached without following links; see the module docs.
#[derive(Debug)]
pub struct SafeDir {
    #[cfg(unix)]
    fd: OwnedFd,
    /// The path it was reached by (for messages only: operations use the handle).
    path: PathBuf,
}

/// Checks that `name` is one plain path component.
fn component(name: &OsStr) -> io::Result<&OsStr> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(part)), None) if part == name => Ok(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        )),
    }
}

/// A temp name beside `name`, unique in this process and across processes.
pub fn temp_name(name: &OsStr) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    tmp
}

#[cfg(unix)]
fn map_nofollow(err: rustix::io::Errno, symlink_means_refusal: bool) -> io::Error {
    // O_NOFOLLOW on a link answers ELOOP (Linux, BSD) or EMLINK (FreeBSD); with
    // O_DIRECTORY too, some systems answer ENOTDIR; the caller checks which it was.
    if symlink_means_refusal && (err == rustix::io::Errno::LOOP || err == rustix::io::Errno::MLINK)
    {
        return link_refused();
    }
    err.into()
}

#[cfg(unix)]
impl SafeDir {
    /// Opens a library root as the user named it (following links in that path, which are
    /// the user's choice). It must be a directory.
    pub fn open_root(path: &Path) -> io::Result<SafeDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(SafeDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path this handle was reached by (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside this folder (for messages).
    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// The folder's real path right now, as the kernel knows the open handle (Linux); the
    /// path it was reached by elsewhere.
    pub fn real_path(&self) -> PathBuf {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let link = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
            if let Ok(real) = std::fs::read_link(link) {
                return real;
            }
        }
        self.path.clone()
    }

    /// `fstat` of the folder itself.
    pub fn stat(&self) -> io::Result<Entry> {
        Ok(entry_of(&rustix::fs::fstat(&self.fd)?))
    }

    /// Flushes every folder from here down (after filling a tree), never through a link.
    pub fn sync_tree(&self) -> io::Result<()> {
        for (name, kind) in self.list()? {
            if kind == Kind::Dir {
                self.open_dir(&name)?.sync_tree()?;
            }
        }
        self.sync()
    }

    /// `lstat` of `name`; `None` when nothing is there.
    pub fn entry(&self, name: impl AsRef<OsStr>) -> io::Result<Option<Entry>> {
        let name = component(name.as_ref())?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(entry_of(&st))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the folder `name` without following a link (a link there is refused).
    pub fn open_dir(&self, name: impl AsRef<OsStr>) -> io::Result<SafeDir> {
        let name = component(name.as_ref())?;
        let opened = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        match opened {
            Ok(fd) => Ok(SafeDir {
                fd,
                path: self.path.join(name),
            }),
            Err(rustix::io::Errno::NOTDIR) => {
                if self.entry(name)?.is_some_and(|e| e.kind == Kind::Symlink) {
                    Err(link_refused())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "is not a folder",
                    ))
                }
            }
            Err(e) => Err(map_nofollow(e, true)),
        }
    }

    /// Opens the folder `name`, creating it first if it is missing (a link there is
    /// refused, never followed).
    pub fn create_dir(&self, name: impl AsRef<OsStr>) -> io::Result<SafeDir> {
        let name = component(name.as_ref())?;
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        self.open_dir(name)
    }

    /// Opens (creating as needed) each folder of the relative path `rel` in turn.
    pub fn create_dir_all(&self, rel: &Path) -> io::Result<SafeDir> {
        let mut dir = self.open_dir_dot()?;
        for comp in rel.components() {
            match comp {
                Component::Normal(part) => dir = dir.create_dir(part)?,
                Component::CurDir => {}
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not a relative path below the folder", rel.display()),
                    ));
                }
            }
        }
        Ok(dir)
    }

    /// Opens each existing folder of the relative path `rel` in turn (no creation).
    pub fn open_dir_all(&self, rel: &Path) -> io::Result<SafeDir> {
        let mut dir = self.open_dir_dot()?;
        for comp in rel.components() {
            match comp {
                Component::Normal(part) => dir = dir.open_dir(part)?,
                Component::CurDir => {}
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not a relative path below the folder", rel.display()),
                    ));
                }
            }
        }
        Ok(dir)
    }

    /// A second handle on this folder.
    pub fn open_dir_dot(&self) -> io::Result<SafeDir> {
        let fd = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(SafeDir {
            fd,
            path: self.path.clone(),
        })
    }

    fn open_file(&self, name: &OsStr, flags: OFlags) -> io::Result<File> {
        let name = component(name)?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(|e| map_nofollow(e, true))?;
        let file = File::from(fd);
        // O_NOFOLLOW guards the name; a fifo or device is refused too (O_NONBLOCK keeps
        // opening one from waiting for a peer; on a regular file it changes nothing).
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is not a regular file",
            ));
        }
        Ok(file)
    }

    /// Creates the file `name`, which must not exist yet (nor a link by that name).
    pub fn create_new(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_file(
            name.as_ref(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
        )
    }

    /// Opens `name` for reading and writing, creating it if missing; never truncates and
    /// never follows a link.
    pub fn open_rw(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_file(name.as_ref(), OFlags::RDWR | OFlags::CREATE)
    }

    /// Opens an existing `name` for reading and appending (never creating, never
    /// truncating), without following a link.
    pub fn open_append(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_file(name.as_ref(), OFlags::RDWR | OFlags::APPEND)
    }

    /// Opens an existing `name` for reading, without following a link.
    pub fn open_read(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_file(name.as_ref(), OFlags::RDONLY)
    }

    /// Renames `from` in this folder to `to` in `dest`. The names themselves are never
    /// resolved through links: a link at `from` is moved as a link, one at `to` replaced.
    pub fn rename(
        &self,
        from: impl AsRef<OsStr>,
        dest: &SafeDir,
        to: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        let (from, to) = (component(from.as_ref())?, component(to.as_ref())?);
        rustix::fs::renameat(&self.fd, from, &dest.fd, to).map_err(Into::into)
    }

    /// Like [`SafeDir::rename`], but fails with `AlreadyExists` instead of replacing `to`.
    pub fn rename_noreplace(
        &self,
        from: impl AsRef<OsStr>,
        dest: &SafeDir,
        to: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        let (from, to) = (component(from.as_ref())?, component(to.as_ref())?);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        match rustix::fs::renameat_with(
            &self.fd,
            from,
            &dest.fd,
            to,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => return Ok(()),
            // File systems without RENAME_NOREPLACE: check, then rename (a small window).
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
        if dest.entry(to)?.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "already exists",
            ));
        }
        self.rename(from, dest, to)
    }

    /// Removes the file or link `name` (a link is removed itself, never its target).
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = component(name.as_ref())?;
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(Into::into)
    }

    /// Removes the empty folder `name`.
    pub fn remove_dir(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = component(name.as_ref())?;
        rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR).map_err(Into::into)
    }

    /// Removes `name` and everything under it, never following a link (links are
    /// unlinked). Returns the bytes of the regular files removed. Nothing there, or parts
    /// vanishing meanwhile (another process removing them too), is fine.
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> io::Result<u64> {
        let name = component(name.as_ref())?;
        let gone = |r: io::Result<()>| match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        match self.entry(name)? {
            None => Ok(0),
            Some(e) if e.kind == Kind::Dir => {
                let dir = match self.open_dir(name) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                    other => other?,
                };
                let mut bytes = 0;
                for (child, _) in dir.list()? {
                    bytes += dir.remove_tree(&child)?;
                }
                drop(dir);
                gone(self.remove_dir(name))?;
                Ok(bytes)
            }
            Some(e) => {
                gone(self.remove_file(name))?;
                Ok(if e.kind == Kind::File { e.len } else { 0 })
            }
        }
    }

    /// The names in this folder (not `.` and `..`) with what each is (not following links).
    pub fn list(&self) -> io::Result<Vec<(OsString, Kind)>> {
        let mut dir = rustix::fs::Dir::read_from(&self.fd)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(name).to_os_string();
            let kind = match entry.file_type() {
                rustix::fs::FileType::RegularFile => Kind::File,
                rustix::fs::FileType::Directory => Kind::Dir,
                rustix::fs::FileType::Symlink => Kind::Symlink,
                rustix::fs::FileType::Unknown => match self.entry(&name)? {
                    Some(e) => e.kind,
                    None => continue,
                },
                _ => Kind::Other,
            };
            out.push((name, kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// A hard link named `name` here to the file at `source` (a path; a link at `source` is
    /// linked itself, not its target).
    pub fn hard_link_from(&self, source: &Path, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = component(name.as_ref())?;
        rustix::fs::linkat(rustix::fs::CWD, source, &self.fd, name, AtFlags::empty())
            .map_err(Into::into)
    }

    /// A symbolic link named `name` here, pointing at `target`.
    pub fn symlink(&self, target: &Path, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = component(name.as_ref())?;
        rustix::fs::symlinkat(target, &self.fd, name).map_err(Into::into)
    }

    /// Flushes the folder's entries to the disk (after creating or renaming in it).
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(Into::into)
    }

    /// Writes `bytes` as `name` atomically: a new temp file beside it, fsync, rename over
    /// `name` (a link there is replaced, never written through), fsync of the folder. On
    /// any failure the temp file is removed and `name` is left exactly as it was.
    pub fn write_atomic(&self, name: impl AsRef<OsStr>, bytes: &[u8]) -> io::Result<()> {
        let name = component(name.as_ref())?;
        let tmp = temp_name(name);
        let result = (|| {
            let mut f = self.create_new(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            self.rename(&tmp, self, name)?;
            self.sync()
        })();
        if result.is_err() {
            let _ = self.remove_file(&tmp);
        }
        result
    }
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // the stat field types differ between Unix systems
fn entry_of(st: &rustix::fs::Stat) -> Entry {
    let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode as _) {
        rustix::fs::FileType::RegularFile => Kind::File,
        rustix::fs::FileType::Directory => Kind::Dir,
        rustix::fs::FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    };
    Entry {
        kind,
        len: st.st_size as u64,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        mtime_ns: (st.st_mtime as i64)
            .saturating_mul(1_000_000_000)
            .saturating_add(st.st_mtime_nsec as i64),
    }
}

/// Identity and stamp of a file named by an ordinary path (an import's source), without
/// following a link at its last component.
pub fn lstat_path(path: &Path) -> io::Result<Entry> {
    let meta = std::fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    #[cfg(unix)]
    let (dev, ino, mtime_ns) = {
        use std::os::unix::fs::MetadataExt;
        (
            meta.dev(),
            meta.ino(),
            meta.mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
        )
    };
    #[cfg(not(unix))]
    let (dev, ino, mtime_ns) = (
        0,
        0,
        meta.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64),
    );
    Ok(Entry {
        kind,
        len: meta.len(),
        dev,
        ino,
        mtime_ns,
    })
}

#[cfg(not(unix))]
compile_error!(
    "model-library writes through verified directory handles (openat with O_NOFOLLOW); \
     only Unix-like systems are supported"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, SafeDir) {
        let dir = tempfile::tempdir().unwrap();
        let safe = SafeDir::open_root(dir.path()).unwrap();
        (dir, safe)
    }

    #[test]
    fn a_link_to_a_folder_is_never_entered() {
        let (dir, root) = root();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("models")).unwrap();
        let err = root.open_dir("models").unwrap_err();
        assert!(is_link_refusal(&err), "{err}");
        let err = root.create_dir("models").unwrap_err();
        assert!(is_link_refusal(&err), "{err}");
        let err = root.create_dir_all(Path::new("models/x")).unwrap_err();
        assert!(is_link_refusal(&err), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_link_to_a_file_is_never_opened_for_writing() {
        let (dir, root) = root();
        let outside = tempfile::tempdir().unwrap();
        let precious = outside.path().join("precious.bin");
        std::fs::write(&precious, b"keep me").unwrap();
        std::os::unix::fs::symlink(&precious, dir.path().join("f.part")).unwrap();
        assert!(is_link_refusal(&root.open_rw("f.part").unwrap_err()));
        assert!(is_link_refusal(&root.open_read("f.part").unwrap_err()));
        assert!(root.create_new("f.part").is_err());
        // Replacing the link by an atomic write leaves the target alone.
        root.write_atomic("f.part", b"new").unwrap();
        assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
        assert_eq!(std::fs::read(dir.path().join("f.part")).unwrap(), b"new");
    }

    #[test]
    fn remove_tree_unlinks_links_and_keeps_their_targets() {
        let (dir, root) = root();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"12345").unwrap();
        std::fs::create_dir_all(dir.path().join("m/sub")).unwrap();
        std::fs::write(dir.path().join("m/sub/w.bin"), b"123").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("m/sub/out")).unwrap();
        assert_eq!(root.remove_tree("m").unwrap(), 3);
        assert!(!dir.path().join("m").exists());
        assert!(outside.path().join("keep").exists());
        assert_eq!(root.remove_tree("m").unwrap(), 0);
    }

    #[test]
    fn names_must_be_single_components() {
        let (_dir, root) = root();
        for bad in ["", "a/b", "..", ".", "/etc"] {
            assert!(root.create_new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rename_noreplace_keeps_what_is_there() {
        let (dir, root) = root();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        std::fs::write(dir.path().join("b"), b"b").unwrap();
        let err = root.rename_noreplace("a", &root, "b").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"b");
        root.rename_noreplace("a", &root, "c").unwrap();
    }

    #[test]
    fn a_fifo_is_not_opened() {
        let (dir, root) = root();
        rustix::fs::mknodat(
            &root.fd,
            "fifo",
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(root.open_rw("fifo").is_err());
        assert!(dir.path().join("fifo").exists());
    }
}
