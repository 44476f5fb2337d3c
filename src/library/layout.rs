//! The library's layout on disk (SPEC §1): where the registry, model folders, partial
//! downloads and the app's own files live, which ids are safe path components, and where the
//! default library is; and the gate every write passes: [`Library::open_writes`] refuses
//! when one of the library's own folders or its registry is a symbolic link
//! ([`LibraryError::WritesOff`]) and hands out [`SafeDir`] handles reached without following
//! links. Creates folders only when asked to initialise a new library or through that gate;
//! never deletes anything.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::library::error::{LibraryError, Result};
use crate::library::fs_safe::{SafeDir, is_link_refusal};

/// File name of the registry inside a library.
pub const REGISTRY_FILE: &str = "model_registry.json";
/// Folder of model folders.
pub const MODELS_DIR: &str = "models";
/// Folder of partial downloads.
pub const DOWNLOADS_DIR: &str = ".downloads";
/// Folder of files the app owns (lock file, persisted cache).
pub const CACHE_DIR: &str = ".cache";
/// Folder under `.cache/` holding import journals and staging folders.
pub const IMPORTS_DIR: &str = "imports";
/// Longest allowed model id.
pub const MAX_ID_LEN: usize = 128;

/// The built-in catalog a new default library starts with.
pub const BUILTIN_CATALOG: &str = include_str!("../../assets/catalog.json");

/// A library folder: the paths of its parts. Cheap to clone; does no I/O by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    root: PathBuf,
}

impl Library {
    /// A library rooted at `root` (absolute-ised against the current directory, not
    /// canonicalised, so symlinked library roots keep their given name).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(&root))
                .unwrap_or(root)
        };
        Library { root }
    }

    /// The library folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `LIBRARY/model_registry.json`.
    pub fn registry_path(&self) -> PathBuf {
        self.root.join(REGISTRY_FILE)
    }

    /// `LIBRARY/models`.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join(MODELS_DIR)
    }

    /// `LIBRARY/.downloads`.
    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join(DOWNLOADS_DIR)
    }

    /// `LIBRARY/.cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join(CACHE_DIR)
    }

    /// `LIBRARY/models/<id>`, after checking that `id` is a valid id.
    pub fn model_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(self.models_dir().join(id))
    }

    /// The library's folder name, for window titles.
    pub fn display_name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.root.display().to_string())
    }

    /// Checks that the library folder exists and is a folder.
    pub fn check_reachable(&self) -> Result<()> {
        match fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(LibraryError::LibraryUnreachable {
                path: self.root.clone(),
                reason: "not a folder".into(),
            }),
            Err(err) => Err(LibraryError::LibraryUnreachable {
                path: self.root.clone(),
                reason: err.to_string(),
            }),
        }
    }

    /// Why writes to this library are off, if they are: `models/`, `.downloads/`, `.cache/`
    /// or `model_registry.json` is a symbolic link. One `lstat` each; for showing the state
    /// (the writes themselves are guarded by [`Library::open_writes`]).
    pub fn writes_off(&self) -> Option<LibraryError> {
        [MODELS_DIR, DOWNLOADS_DIR, CACHE_DIR, REGISTRY_FILE]
            .into_iter()
            .map(|name| self.root.join(name))
            .find(|path| fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()))
            .map(|link| LibraryError::WritesOff {
                target: fs::read_link(&link).ok(),
                link,
            })
    }

    /// The gate every write to the library passes: refuses with
    /// [`LibraryError::WritesOff`] when one of the library's own folders or its registry is
    /// a symbolic link, and otherwise opens the root for writes relative to it.
    pub fn open_writes(&self) -> Result<LibraryWrites> {
        if let Some(off) = self.writes_off() {
            return Err(off);
        }
        let root = SafeDir::open_root(&self.root).map_err(|e| LibraryError::io(&self.root, e))?;
        Ok(LibraryWrites { root })
    }
}

/// Write access to a library, from [`Library::open_writes`]: its root and its own folders
/// as [`SafeDir`] handles, each reached without following a link. A folder that became a
/// link since the gate was passed is refused as [`LibraryError::WritesOff`].
#[derive(Debug)]
pub struct LibraryWrites {
    root: SafeDir,
}

impl LibraryWrites {
    /// The library folder.
    pub fn root(&self) -> &SafeDir {
        &self.root
    }

    /// `models/`, created if missing.
    pub fn models(&self) -> Result<SafeDir> {
        self.own_dir(MODELS_DIR)
    }

    /// `.downloads/`, created if missing.
    pub fn downloads(&self) -> Result<SafeDir> {
        self.own_dir(DOWNLOADS_DIR)
    }

    /// `.cache/`, created if missing.
    pub fn cache(&self) -> Result<SafeDir> {
        self.own_dir(CACHE_DIR)
    }

    /// One of the library's own folders (`models`, `.downloads`, `.cache`) if it exists;
    /// `None` when it does not (nothing is created).
    pub fn existing(&self, name: &str) -> Result<Option<SafeDir>> {
        match self.root.entry(name) {
            Ok(None) => Ok(None),
            Ok(Some(_)) => self.own_dir(name).map(Some),
            Err(e) => Err(LibraryError::io(self.root.join(name), e)),
        }
    }

    /// `.cache/<name>/`, created if missing.
    pub fn cache_sub(&self, name: &str) -> Result<SafeDir> {
        let cache = self.cache()?;
        cache
            .create_dir(name)
            .map_err(|e| LibraryError::io(cache.join(name), e))
    }

    fn own_dir(&self, name: &str) -> Result<SafeDir> {
        self.root.create_dir(name).map_err(|e| {
            let link = self.root.join(name);
            if is_link_refusal(&e) {
                LibraryError::WritesOff {
                    target: fs::read_link(&link).ok(),
                    link,
                }
            } else {
                LibraryError::io(link, e)
            }
        })
    }
}

/// The default library folder: `$MODEL_LIBRARY_DIR`, else the platform data directory
/// (`~/.local/share/model-library` on Linux). `None` when neither can be determined.
pub fn default_library_dir() -> Option<PathBuf> {
    match std::env::var_os("MODEL_LIBRARY_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::data_dir().map(|d| d.join("model-library")),
    }
}

/// Checks a model id: 1–128 characters of `[A-Za-z0-9._-]`, not starting with `.`.
/// Such an id is always exactly one safe path component.
pub fn validate_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        Some("an id cannot be empty")
    } else if id.len() > MAX_ID_LEN {
        Some("an id has at most 128 characters")
    } else if id.starts_with('.') {
        Some("an id cannot start with '.'")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("an id may contain only letters, digits, '.', '_' and '-'")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(LibraryError::InvalidId {
            id: id.to_string(),
            reason,
        }),
    }
}

/// Checks a registry file path: relative, no `..`, no root or prefix, not empty.
/// Returns why it is refused.
pub fn check_relative_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.contains('\0') {
        return Err("contains a NUL byte");
    }
    let p = Path::new(path);
    if p.is_absolute() || path.starts_with('/') || path.starts_with('\\') {
        return Err("is absolute");
    }
    let mut normal = 0;
    for comp in p.components() {
        match comp {
            Component::Normal(_) => normal += 1,
            Component::CurDir => {}
            Component::ParentDir => return Err("contains a '..' component"),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        }
    }
    // Backslash separators would be components on Windows; refuse `..` hidden behind them.
    if path.split(['/', '\\']).any(|part| part == "..") {
        return Err("contains a '..' component");
    }
    if normal == 0 {
        return Err("names no file");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accepted() {
        for id in ["a", "tinyllama-1.1b-chat-q4km", "A_b.c-1", &"x".repeat(128)] {
            validate_id(id).unwrap();
        }
    }

    #[test]
    fn hostile_ids_refused() {
        for id in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            ".hidden",
            "a b",
            "é",
            "x\0",
            &"x".repeat(129),
            "/etc",
            "C:",
        ] {
            assert!(validate_id(id).is_err(), "{id:?} should be refused");
        }
    }

    #[test]
    fn relative_paths() {
        assert!(check_relative_path("a.gguf").is_ok());
        assert!(check_relative_path("sub/dir/a.bin").is_ok());
        assert!(check_relative_path("./a.bin").is_ok());
        assert_eq!(check_relative_path("/etc/passwd"), Err("is absolute"));
        assert_eq!(
            check_relative_path("../x"),
            Err("contains a '..' component")
        );
        assert_eq!(
            check_relative_path("a/../../x"),
            Err("contains a '..' component")
        );
        assert_eq!(
            check_relative_path("a\\..\\x"),
            Err("contains a '..' component")
        );
        assert_eq!(check_relative_path(""), Err("is empty"));
        assert_eq!(check_relative_path("."), Err("names no file"));
    }
}
