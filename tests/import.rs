//! Importing model files and folders: copy, move, hardlink, refused cases, format detection
//! from headers, registry entries kept alongside unknown fields, and two processes at once.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::TestLib;
use model_library::library::{
    ImportMode, ImportRequest, LibraryError, ListKind, ModelStatus, Registry,
};

fn gguf_bytes(len: usize) -> Vec<u8> {
    let mut v = b"GGUF\x03\x00\x00\x00".to_vec();
    v.resize(len, 1);
    v
}

fn safetensors_bytes() -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header);
    v.extend_from_slice(&[0u8; 8]);
    v
}

#[test]
fn copy_a_file_detects_its_format_and_registers_it() {
    let lib = TestLib::new();
    lib.registry(r#"{"version":1,"note":"keep me","models":[{"id":"old","x-extra":1}]}"#);
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("My Model Q4.bin");
    fs::write(&src, gguf_bytes(5000)).unwrap();
    let (mut svc, _) = lib.service();
    let outcome = svc
        .import_model(&ImportRequest {
            source: src.clone(),
            id: None,
            mode: ImportMode::Copy,
        })
        .unwrap();
    assert_eq!(outcome.id, "My-Model-Q4");
    assert_eq!(
        outcome.format.as_deref(),
        Some("gguf"),
        "header beats the .bin extension"
    );
    assert_eq!((outcome.files, outcome.bytes), (1, 5000));
    assert!(src.exists(), "copy leaves the source");
    assert_eq!(
        fs::read(lib.path("models/My-Model-Q4/My Model Q4.bin"))
            .unwrap()
            .len(),
        5000
    );

    let listing = svc.list(ListKind::Full, false).unwrap();
    let m = listing
        .models
        .iter()
        .find(|m| m.id == "My-Model-Q4")
        .unwrap();
    assert!(m.registered);
    assert_eq!(m.status, ModelStatus::Downloaded);
    assert_eq!(m.expected_size_bytes(), Some(5000));
    let doc: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(lib.path("model_registry.json")).unwrap())
            .unwrap();
    assert_eq!(doc["note"], "keep me");
    assert_eq!(doc["models"][0]["x-extra"], 1);
    assert_eq!(doc["models"][1]["format"], "gguf");
    assert!(!lib.path(".cache").read_dir().unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("import-")
    }));
}

#[test]
fn move_a_folder_keeps_its_layout() {
    let lib = TestLib::new();
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("bert");
    fs::create_dir_all(src.join("tok")).unwrap();
    fs::write(src.join("model.safetensors"), safetensors_bytes()).unwrap();
    fs::write(src.join("tok/vocab.txt"), b"a\nb\n").unwrap();
    let (mut svc, _) = lib.service();
    let outcome = svc
        .import_model(&ImportRequest {
            source: src.clone(),
            id: Some("bert-base".into()),
            mode: ImportMode::Move,
        })
        .unwrap();
    assert_eq!(outcome.format.as_deref(), Some("safetensors"));
    assert_eq!(outcome.files, 2);
    assert!(!src.exists(), "move removes the source");
    assert!(lib.path("models/bert-base/tok/vocab.txt").is_file());
    let reg = Registry::load(&lib.library()).unwrap();
    let files: Vec<_> = reg
        .get("bert-base")
        .unwrap()
        .files
        .iter()
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(files, ["model.safetensors", "tok/vocab.txt"]);
}

#[test]
fn hardlink_shares_the_bytes() {
    let lib = TestLib::new();
    let src = lib
        .root()
        .parent()
        .unwrap()
        .join(format!("hl-src-{}", std::process::id()));
    fs::write(&src, gguf_bytes(100)).unwrap();
    let (mut svc, _) = lib.service();
    let outcome = svc
        .import_model(&ImportRequest {
            source: src.clone(),
            id: Some("linked".into()),
            mode: ImportMode::Hardlink,
        })
        .unwrap();
    let placed = outcome.path.join(src.file_name().unwrap());
    assert_eq!(
        fs::metadata(&placed).unwrap().ino(),
        fs::metadata(&src).unwrap().ino()
    );
    fs::remove_file(&src).unwrap();
}

#[test]
fn refused_imports_change_nothing() {
    let lib = TestLib::new();
    lib.file("models/taken/w", 1);
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("m.gguf");
    fs::write(&src, gguf_bytes(10)).unwrap();
    let link = src_dir.path().join("link.gguf");
    std::os::unix::fs::symlink(&src, &link).unwrap();
    let (mut svc, _) = lib.service();
    let import = |svc: &mut model_library::library::ModelLibraryService,
                  source: &std::path::Path,
                  id: Option<&str>,
                  mode| {
        svc.import_model(&ImportRequest {
            source: source.to_path_buf(),
            id: id.map(str::to_string),
            mode,
        })
    };
    let cases: Vec<(Result<_, LibraryError>, &str)> = vec![
        (
            import(&mut svc, &link, None, ImportMode::Copy),
            "is a symbolic link",
        ),
        (
            import(&mut svc, &src, Some("taken"), ImportMode::Copy),
            "already exists",
        ),
        (
            import(&mut svc, &src, Some("../escape"), ImportMode::Copy),
            "invalid model id",
        ),
        (
            import(
                &mut svc,
                &lib.path("models/taken"),
                Some("again"),
                ImportMode::Copy,
            ),
            "already inside the library",
        ),
        (
            import(
                &mut svc,
                &src_dir.path().join("nope"),
                None,
                ImportMode::Copy,
            ),
            "nope",
        ),
    ];
    for (result, needle) in cases {
        let err = result.unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(
        !lib.path("model_registry.json").exists(),
        "no registry written"
    );
    let names: Vec<_> = fs::read_dir(lib.path("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["taken"]);
    assert!(src.exists());
}

#[test]
fn two_processes_importing_at_once_both_land_in_the_registry() {
    let lib = TestLib::new();
    let src_dir = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    for i in 0..6 {
        let src = src_dir.path().join(format!("model-{i}.gguf"));
        fs::write(&src, gguf_bytes(64 + i)).unwrap();
        children.push(
            Command::new(env!("CARGO_BIN_EXE_model-library"))
                .args(["--library", lib.root().to_str().unwrap(), "import"])
                .arg(&src)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let reg = Registry::load(&lib.library()).unwrap();
    let mut ids: Vec<_> = reg.entries.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    assert_eq!(
        ids,
        (0..6).map(|i| format!("model-{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn symlink_import_links_the_files_and_delete_leaves_the_source() {
    let lib = TestLib::new();
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("big-model");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("weights.gguf"), gguf_bytes(4096)).unwrap();
    fs::write(src.join("sub/config.json"), b"{}").unwrap();
    let (mut svc, _) = lib.service();
    let outcome = svc
        .import_model(&ImportRequest {
            source: src.clone(),
            id: None,
            mode: ImportMode::Symlink,
        })
        .unwrap();
    assert_eq!(outcome.format.as_deref(), Some("gguf"));
    let placed = lib.path("models/big-model/weights.gguf");
    assert!(
        fs::symlink_metadata(&placed)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        lib.path("models/big-model/sub").is_dir(),
        "folders are real"
    );

    let listing = svc.list(ListKind::Full, false).unwrap();
    let m = listing.models.iter().find(|m| m.id == "big-model").unwrap();
    assert_eq!(m.status, ModelStatus::Downloaded, "{:?}", m.error);
    assert_eq!(m.size_bytes(), Some(4098));

    svc.delete_model("big-model", model_library::library::DeleteMode::Permanent)
        .unwrap();
    assert!(!lib.path("models/big-model").exists());
    assert_eq!(
        fs::read(src.join("weights.gguf")).unwrap().len(),
        4096,
        "source intact"
    );
}
