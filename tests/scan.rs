//! Scanning edge cases: statuses of SPEC §3, size mismatches, symlinks (never followed),
//! symlink loops, odd names, a missing or unreadable library, stray files, progress.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::{TestLib, registry_json};
use model_library::library::{LibraryError, ListKind, ModelInfo, ModelStatus};

fn full(lib: &TestLib) -> Vec<ModelInfo> {
    let (mut svc, _) = lib.service();
    let listing = svc.list(ListKind::Full, false).unwrap();
    listing.models.iter().map(|m| ModelInfo::clone(m)).collect()
}

fn get<'a>(models: &'a [ModelInfo], id: &str) -> &'a ModelInfo {
    models
        .iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("no {id}"))
}

#[test]
fn statuses_follow_the_spec() {
    let lib = TestLib::new();
    lib.registry(&registry_json(&[
        ("complete", &[("a.bin", 4), ("sub/b.bin", 6)]),
        ("half", &[("a.bin", 4), ("b.bin", 6)]),
        ("nothing", &[("a.bin", 4)]),
        ("wrong-size", &[("a.bin", 4)]),
        ("leftovers", &[("a.bin", 4)]),
        ("complete-but-leftovers", &[("a.bin", 4)]),
        ("empty-folder", &[("a.bin", 4)]),
        ("no-files-listed", &[]),
    ]))
    .file("models/complete/a.bin", 4)
    .file("models/complete/sub/b.bin", 6)
    .file("models/half/a.bin", 4)
    .file("models/wrong-size/a.bin", 5)
    .file(".downloads/leftovers/a.bin.part", 2)
    .file("models/complete-but-leftovers/a.bin", 4)
    .file(".downloads/complete-but-leftovers/x.part", 1)
    .file("models/no-files-listed/whatever.gguf", 9)
    .file("models/unregistered/model.safetensors", 3)
    .file(".downloads/stray-download/f.part", 1);
    fs::create_dir_all(lib.path("models/empty-folder")).unwrap();

    let models = full(&lib);
    let status = |id: &str| get(&models, id).status;
    assert_eq!(status("complete"), ModelStatus::Downloaded);
    assert_eq!(status("half"), ModelStatus::Partial);
    assert_eq!(status("nothing"), ModelStatus::Available);
    assert_eq!(status("wrong-size"), ModelStatus::Error);
    assert_eq!(status("leftovers"), ModelStatus::Partial);
    assert_eq!(status("complete-but-leftovers"), ModelStatus::Partial);
    assert_eq!(status("empty-folder"), ModelStatus::Available);
    assert_eq!(status("no-files-listed"), ModelStatus::Downloaded);
    assert_eq!(status("unregistered"), ModelStatus::Downloaded);
    assert_eq!(status("stray-download"), ModelStatus::Partial);

    let wrong = get(&models, "wrong-size");
    assert_eq!(
        wrong.error.as_deref(),
        Some("size mismatch: a.bin is 5 bytes, expected 4")
    );
    let complete = get(&models, "complete");
    assert_eq!(complete.size_bytes(), Some(10));
    assert_eq!(complete.file_count(), Some(2));
    assert_eq!(complete.expected_size_bytes(), Some(10));
    assert!(complete.modified().is_some());
    assert!(complete.path().ends_with("models/complete"));
    let unregistered = get(&models, "unregistered");
    assert!(!unregistered.registered);
    assert_eq!(unregistered.provider, "local");
    assert_eq!(unregistered.format.as_deref(), Some("safetensors"));
    assert_eq!(get(&models, "nothing").modified(), None);

    // What an interrupted download kept is told apart from the folder's size.
    assert_eq!(get(&models, "leftovers").partial_bytes(), Some(2));
    assert_eq!(get(&models, "leftovers").size_bytes(), Some(0));
    assert_eq!(
        get(&models, "complete-but-leftovers").partial_bytes(),
        Some(1)
    );
    assert_eq!(get(&models, "complete").partial_bytes(), None);
    let json = serde_json::to_value(get(&models, "complete")).unwrap();
    assert!(
        json.get("partial_bytes").is_none(),
        "left out when there are none"
    );
}

#[test]
fn fast_listing_does_not_recurse() {
    let lib = TestLib::new();
    lib.registry(&registry_json(&[("a", &[("w", 1)]), ("b", &[("w", 1)])]))
        .file("models/a/deep/deeper/w", 1)
        .file("models/c/w", 1);
    let (mut svc, _) = lib.service();
    let listing = svc.list(ListKind::Fast, false).unwrap();
    let models: &Vec<ModelInfo> = &listing.models.iter().map(|m| ModelInfo::clone(m)).collect();
    assert_eq!(models.len(), 3);
    assert!(
        models
            .iter()
            .all(|m| m.size_bytes().is_none() && m.file_count().is_none())
    );
    assert_eq!(get(models, "a").status, ModelStatus::Downloaded);
    assert_eq!(get(models, "b").status, ModelStatus::Available);
    assert_eq!(get(models, "c").status, ModelStatus::Downloaded);
}

#[test]
fn linked_folders_are_never_descended_linked_files_are_measured() {
    let lib = TestLib::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("huge.bin"), vec![0u8; 100_000]).unwrap();
    lib.registry(&registry_json(&[("linked-file", &[("w.bin", 100_000)])]))
        .file("models/inside/real.bin", 10);
    // A symlink inside a model folder pointing outside: counted as a link, not followed.
    symlink(outside.path(), lib.path("models/inside/escape")).unwrap();
    // A whole model folder that is a symlink to outside.
    symlink(outside.path(), lib.path("models/linked-folder")).unwrap();
    // A registered file that is a symlink to a regular file (what a symlink import makes).
    fs::create_dir_all(lib.path("models/linked-file")).unwrap();
    symlink(
        outside.path().join("huge.bin"),
        lib.path("models/linked-file/w.bin"),
    )
    .unwrap();

    let models = full(&lib);
    let inside = get(&models, "inside");
    assert_eq!(inside.status, ModelStatus::Downloaded);
    assert_eq!(inside.file_count(), Some(2));
    assert!(
        inside.size_bytes().unwrap() < 1000,
        "{:?}",
        inside.size_bytes()
    );
    let folder = get(&models, "linked-folder");
    assert_eq!(folder.status, ModelStatus::Error);
    assert!(folder.error.as_deref().unwrap().contains("symbolic link"));
    assert!(folder.size_bytes().unwrap() < 1000);
    let file = get(&models, "linked-file");
    assert_eq!(file.status, ModelStatus::Downloaded, "{:?}", file.error);
    assert_eq!(
        file.size_bytes(),
        Some(100_000),
        "measured through the link"
    );

    // A declared file linked to a folder is an error, and the folder is not descended.
    fs::remove_file(lib.path("models/linked-file/w.bin")).unwrap();
    symlink(outside.path(), lib.path("models/linked-file/w.bin")).unwrap();
    let models = full(&lib);
    let file = get(&models, "linked-file");
    assert_eq!(file.status, ModelStatus::Error);
    assert!(
        file.error
            .as_deref()
            .unwrap()
            .contains("w.bin is a symbolic link to something that is not a readable file")
    );
    assert!(file.size_bytes().unwrap() < 1000);
}

#[test]
fn symlink_loops_are_harmless() {
    let lib = TestLib::new();
    lib.file("models/loopy/w.bin", 3);
    symlink(lib.path("models/loopy"), lib.path("models/loopy/self")).unwrap();
    symlink(lib.path("models/loopy/b"), lib.path("models/loopy/a")).unwrap();
    symlink(lib.path("models/loopy/a"), lib.path("models/loopy/b")).unwrap();
    symlink(lib.path("models/loop2"), lib.path("models/loop2")).unwrap_or(());
    let models = full(&lib);
    let loopy = get(&models, "loopy");
    assert_eq!(loopy.status, ModelStatus::Downloaded);
    assert_eq!(loopy.file_count(), Some(4));
}

#[test]
fn odd_folder_names_are_recorded_on_that_model() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let lib = TestLib::new();
    let bad = OsStr::from_bytes(b"caf\xe9");
    let dir = lib.path("models").join(bad);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("w"), b"12").unwrap();
    lib.file("models/has space/w", 1).file("models/ok/w", 1);
    let models = full(&lib);
    assert_eq!(models.len(), 3);
    let nonutf8 = get(&models, "caf\u{FFFD}");
    assert_eq!(nonutf8.status, ModelStatus::Error);
    assert!(
        nonutf8
            .error
            .as_deref()
            .unwrap()
            .contains("not valid UTF-8")
    );
    assert_eq!(nonutf8.size_bytes(), Some(2), "still measured");
    let spaced = get(&models, "has space");
    assert_eq!(spaced.status, ModelStatus::Error);
    assert!(
        spaced
            .error
            .as_deref()
            .unwrap()
            .contains("not a valid model id")
    );
    assert_eq!(get(&models, "ok").status, ModelStatus::Downloaded);
}

#[test]
fn stray_files_and_hidden_entries_are_not_models() {
    let lib = TestLib::new();
    lib.file("models/loose.gguf", 5)
        .file("models/.DS_Store", 1)
        .file("models/.hidden-dir/w", 1)
        .file("models/real/w", 1);
    let models = full(&lib);
    assert_eq!(
        models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["real"]
    );
}

#[test]
fn missing_library_is_a_clear_error() {
    let lib = TestLib::new();
    let gone = lib.path("does-not-exist");
    let library = model_library::library::Library::new(&gone);
    let mut svc =
        model_library::library::ModelLibraryService::new(library, Default::default()).unwrap();
    let err = svc.list(ListKind::Full, false).unwrap_err();
    assert!(matches!(err, LibraryError::LibraryUnreachable { .. }));
    assert!(err.to_string().contains("does-not-exist"));
}

#[test]
fn library_vanishing_keeps_the_last_listing() {
    let lib = TestLib::new();
    lib.file("models/a/w", 1);
    let (mut svc, _) = lib.service();
    svc.list(ListKind::Full, false).unwrap();
    let moved = lib.root().with_extension("moved");
    fs::rename(lib.root(), &moved).unwrap();
    let err = svc.list(ListKind::Full, false).unwrap_err();
    assert!(err.to_string().contains("library folder"), "{err}");
    assert_eq!(svc.cached(ListKind::Full).unwrap().models.len(), 1);
    fs::rename(&moved, lib.root()).unwrap();
    assert_eq!(svc.list(ListKind::Full, false).unwrap().models.len(), 1);
}

#[test]
fn models_folder_that_is_a_file_is_a_clear_error() {
    let lib = TestLib::new();
    fs::remove_dir(lib.path("models")).unwrap();
    fs::write(lib.path("models"), b"oops").unwrap();
    let (mut svc, _) = lib.service();
    let err = svc.list(ListKind::Full, false).unwrap_err().to_string();
    assert!(err.contains("models"), "{err}");
}

#[test]
fn missing_models_folder_is_an_empty_library() {
    let lib = TestLib::new();
    fs::remove_dir(lib.path("models")).unwrap();
    lib.registry(&registry_json(&[("a", &[("w", 1)])]));
    let models = full(&lib);
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].status, ModelStatus::Available);
}

#[test]
fn progress_counts_every_model() {
    let lib = TestLib::new();
    for i in 0..50 {
        lib.file(&format!("models/m{i}/w"), 1);
    }
    let (mut svc, _) = lib.service();
    let progress = svc.progress();
    assert!(!progress.read().running);
    svc.list(ListKind::Full, false).unwrap();
    let p = progress.read();
    assert_eq!((p.done, p.total, p.running), (50, 50, false));
}

#[test]
fn many_models_in_parallel_match_a_sequential_count() {
    let lib = TestLib::new();
    let mut expected = 0u64;
    for i in 0..300 {
        let size = (i * 37 % 101) + 1;
        expected += size as u64;
        lib.file(&format!("models/m{i:04}/a/b/w{}", i % 3), size);
    }
    let models = full(&lib);
    assert_eq!(models.len(), 300);
    assert_eq!(
        models.iter().map(|m| m.size_bytes().unwrap()).sum::<u64>(),
        expected
    );
    let ids: Vec<_> = models.iter().map(|m| m.id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "unregistered models are listed by name");
}

/// A minimal GGUF v3 header: two key-value pairs and one tensor.
fn gguf_header() -> Vec<u8> {
    fn s(v: &mut Vec<u8>, text: &str) {
        v.extend_from_slice(&(text.len() as u64).to_le_bytes());
        v.extend_from_slice(text.as_bytes());
    }
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&1u64.to_le_bytes()); // tensors
    v.extend_from_slice(&2u64.to_le_bytes()); // key-value pairs
    s(&mut v, "general.architecture");
    v.extend_from_slice(&8u32.to_le_bytes()); // string
    s(&mut v, "llama");
    s(&mut v, "llama.context_length");
    v.extend_from_slice(&4u32.to_le_bytes()); // u32
    v.extend_from_slice(&2048u32.to_le_bytes());
    s(&mut v, "tok_embeddings.weight");
    v.extend_from_slice(&2u32.to_le_bytes());
    v.extend_from_slice(&4u64.to_le_bytes());
    v.extend_from_slice(&8u64.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes()); // F32
    v.extend_from_slice(&0u64.to_le_bytes());
    v.resize(v.len() + 128, 0);
    v
}

#[test]
fn library_models_get_header_metadata_in_the_background() {
    let lib = TestLib::new();
    let p = lib.path("models/tiny/tiny.gguf");
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, gguf_header()).unwrap();
    lib.file("models/other/readme.txt", 10);
    let (mut svc, _) = lib.service();
    let first = svc.list(ListKind::Full, false).unwrap();
    assert!(
        first.models.iter().all(|m| m.metadata.is_none()),
        "scans read no headers"
    );
    assert!(svc.enrich_metadata(100));
    let listing = svc.list(ListKind::Full, false).unwrap();
    let tiny = listing.models.iter().find(|m| m.id == "tiny").unwrap();
    let meta = tiny.metadata.as_ref().expect("metadata");
    assert_eq!(meta.architecture.as_deref(), Some("llama"));
    assert_eq!(meta.context_length, Some(2048));
    assert_eq!(meta.parameter_count, Some(32));
    assert!(!svc.enrich_metadata(100), "nothing left to read");
}

/// A split GGUF (llama.cpp's `-00001-of-00003` naming) is one model whose size is its
/// parts'; a part that is not there makes it `partial`, saying which (registered or not).
#[test]
fn a_split_model_with_a_missing_part_is_partial_and_says_which() {
    let lib = TestLib::new();
    lib.registry(&registry_json(&[("declared", &[("w.gguf", 3)])]))
        .file("models/whole/x-00001-of-00002.gguf", 10)
        .file("models/whole/x-00002-of-00002.gguf", 7)
        .file("models/holed/q/x-Q4-00001-of-00003.gguf", 10)
        .file("models/holed/q/x-Q4-00003-of-00003.gguf", 10)
        .file("models/declared/w.gguf", 3)
        .file("models/declared/extra-00002-of-00002.gguf", 4);
    let models = full(&lib);
    let whole = get(&models, "whole");
    assert_eq!(
        (whole.status, whole.size_bytes()),
        (ModelStatus::Downloaded, Some(17))
    );
    let holed = get(&models, "holed");
    assert_eq!(holed.status, ModelStatus::Partial);
    assert!(
        holed
            .note
            .as_deref()
            .unwrap()
            .contains("x-Q4-00002-of-00003.gguf"),
        "{:?}",
        holed.note
    );
    let declared = get(&models, "declared");
    assert_eq!(declared.status, ModelStatus::Partial);
    assert!(
        declared
            .note
            .as_deref()
            .unwrap()
            .contains("extra-00001-of-00002.gguf")
    );
}
