//! model_registry.json edge cases: absent, empty, invalid JSON, wrong version and shape,
//! duplicate and hostile ids, hostile paths, wrong types, defaults, unknown fields kept on
//! rewrite, and concurrent writers.

mod common;

use std::fs;

use common::TestLib;
use model_library::library::{LibraryError, ListKind, ModelStatus};
use model_library::library::{Registry, update_registry, upsert_entry};
use serde_json::{Value, json};

fn load(lib: &TestLib) -> Result<Registry, LibraryError> {
    Registry::load(&lib.library())
}

#[test]
fn absent_registry_is_an_empty_catalog() {
    let lib = TestLib::new();
    assert_eq!(load(&lib).unwrap(), Registry::default());
}

#[test]
fn empty_and_whitespace_registries_are_empty_catalogs() {
    let lib = TestLib::new();
    for text in [
        "",
        "  \n\t",
        r#"{"version": 1}"#,
        r#"{"version": 1, "models": []}"#,
    ] {
        lib.registry(text);
        assert_eq!(load(&lib).unwrap(), Registry::default(), "{text:?}");
    }
}

#[test]
fn invalid_json_names_file_and_line() {
    let lib = TestLib::new();
    lib.registry("{\n  \"version\": 1,\n  \"models\": [\n    { \"id\": \"a\" \n    { \"id\": \"b\" }\n  ]\n}\n");
    let err = load(&lib).unwrap_err();
    match &err {
        LibraryError::RegistrySyntax { path, line, .. } => {
            assert!(path.ends_with("model_registry.json"));
            assert_eq!(*line, 5);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("model_registry.json") && msg.contains("line 5"),
        "{msg}"
    );
}

#[test]
fn wrong_version_and_shapes_are_errors() {
    let lib = TestLib::new();
    for (text, needle) in [
        (
            r#"{"version": 2, "models": []}"#,
            "unsupported registry version 2",
        ),
        (
            r#"{"version": "1", "models": []}"#,
            "unsupported registry version",
        ),
        (r#"[]"#, "must be a JSON object"),
        (
            r#"{"version": 1, "models": {}}"#,
            "\"models\" must be an array",
        ),
    ] {
        lib.registry(text);
        let err = load(&lib).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("model_registry.json"),
            "{text}: {err}"
        );
    }
}

#[test]
fn defaults_apply() {
    let lib = TestLib::new();
    lib.registry(r#"{"version": 1, "models": [{"id": "only-id"}]}"#);
    let (mut svc, _) = lib.service();
    let listing = svc.list(ListKind::Full, false).unwrap();
    let m = &listing.models[0];
    assert_eq!((&*m.name, m.provider.as_str()), ("only-id", "local"));
    assert!(m.capabilities.is_empty());
    assert_eq!(m.status, ModelStatus::Available);
    assert!(m.registered);
}

#[test]
fn duplicate_ids_keep_the_first_and_report_the_rest() {
    let lib = TestLib::new();
    lib.registry(
        r#"{"version":1,"models":[{"id":"a","name":"First"},{"id":"b"},{"id":"a","name":"Second"}]}"#,
    );
    let reg = load(&lib).unwrap();
    assert_eq!(reg.entries.len(), 2);
    assert_eq!(reg.get("a").unwrap().name.as_deref(), Some("First"));
    assert_eq!(reg.problems.len(), 1);
    assert_eq!(reg.problems[0].index, 2);
    assert!(reg.problems[0].to_string().contains("duplicate id"));
}

#[test]
fn hostile_ids_are_reported_and_the_rest_loads() {
    let lib = TestLib::new();
    lib.registry(
        r#"{"version":1,"models":[
            {"id":"../escape"}, {"id":"a/b"}, {"id":"."}, {"id":""}, {"id":".hidden"},
            {"id":"x y"}, {"id":42}, {"name":"no id"}, "not an object",
            {"id":"good"}]}"#,
    );
    let reg = load(&lib).unwrap();
    assert_eq!(
        reg.entries
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        vec!["good"]
    );
    assert_eq!(reg.problems.len(), 9);
    assert!(reg.problems[0].to_string().contains("\"../escape\""));
    assert!(
        reg.problems[6]
            .to_string()
            .contains("\"id\" must be a string")
    );
    assert!(reg.problems[7].to_string().contains("no \"id\""));

    // The listing shows the good entry and carries the problems; nothing outside is touched.
    let (mut svc, _) = lib.service();
    let listing = svc.list(ListKind::Full, false).unwrap();
    assert_eq!(listing.models.len(), 1);
    assert_eq!(listing.problems.len(), 9);
}

#[test]
fn hostile_paths_and_wrong_types_put_that_entry_in_error() {
    let lib = TestLib::new();
    lib.registry(
        r#"{"version":1,"models":[
            {"id":"abs","files":[{"path":"/etc/passwd"}]},
            {"id":"up","files":[{"path":"../../x"}]},
            {"id":"types","name":7,"capabilities":"chat","files":[{"path":"a","size":-1}]},
            {"id":"sha","files":[{"path":"a","sha256":"xyz"}]},
            {"id":"fine","files":[{"path":"sub/a.bin","size":3}]}]}"#,
    )
    .file("models/fine/sub/a.bin", 3);
    let (mut svc, _) = lib.service();
    let listing = svc.list(ListKind::Full, false).unwrap();
    let get = |id: &str| listing.models.iter().find(|m| m.id == id).unwrap();
    let err = |id: &str| get(id).error.clone().unwrap_or_default();
    assert_eq!(get("abs").status, ModelStatus::Error);
    assert!(err("abs").contains("is absolute"), "{}", err("abs"));
    assert!(err("up").contains("'..'"), "{}", err("up"));
    let t = err("types");
    assert!(
        t.contains("\"name\" must be a string")
            && t.contains("\"capabilities\" must be an array of strings")
            && t.contains("non-negative integer"),
        "{t}"
    );
    assert!(err("sha").contains("64 hex digits"));
    assert_eq!(get("fine").status, ModelStatus::Downloaded);
    assert!(!lib.root().parent().unwrap().join("x").exists());
}

#[test]
fn unknown_fields_survive_a_rewrite() {
    let lib = TestLib::new();
    lib.registry(
        r#"{"version":1,"generator":"hand","models":[
            {"id":"a","custom":{"deep":[1,2,3]},"files":[{"path":"f","mirror":"m"}]},
            {"id":"b"}]}"#,
    );
    update_registry(&lib.library(), |doc| {
        let mut entry = serde_json::Map::new();
        entry.insert("id".into(), json!("a"));
        entry.insert("name".into(), json!("Renamed"));
        upsert_entry(doc, entry)?;
        let mut new = serde_json::Map::new();
        new.insert("id".into(), json!("c"));
        upsert_entry(doc, new)
    })
    .unwrap();
    let doc: Value =
        serde_json::from_str(&fs::read_to_string(lib.path("model_registry.json")).unwrap())
            .unwrap();
    assert_eq!(doc["generator"], "hand");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["models"][0]["name"], "Renamed");
    assert_eq!(doc["models"][0]["custom"]["deep"], json!([1, 2, 3]));
    assert_eq!(doc["models"][0]["files"][0]["mirror"], "m");
    assert_eq!(doc["models"][1]["id"], "b");
    assert_eq!(doc["models"][2]["id"], "c");
    // No temp files are left beside it.
    let names: Vec<_> = fs::read_dir(lib.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn a_rewrite_of_a_corrupt_registry_writes_nothing() {
    let lib = TestLib::new();
    lib.registry("{ not json");
    let err = update_registry(&lib.library(), |_| Ok(())).unwrap_err();
    assert!(err.to_string().contains("line 1"));
    assert_eq!(
        fs::read_to_string(lib.path("model_registry.json")).unwrap(),
        "{ not json"
    );
}

#[test]
fn a_failed_change_writes_nothing() {
    let lib = TestLib::new();
    lib.registry(r#"{"version":1,"models":[{"id":"a"}]}"#);
    let before = fs::read(lib.path("model_registry.json")).unwrap();
    let err = update_registry(&lib.library(), |doc| {
        let mut bad = serde_json::Map::new();
        bad.insert("id".into(), json!("../x"));
        upsert_entry(doc, bad)
    })
    .unwrap_err();
    assert!(matches!(err, LibraryError::InvalidId { .. }));
    assert_eq!(fs::read(lib.path("model_registry.json")).unwrap(), before);
}

#[test]
fn concurrent_writers_lose_no_update() {
    let lib = TestLib::new();
    let library = lib.library();
    std::thread::scope(|s| {
        for t in 0..4 {
            let library = library.clone();
            s.spawn(move || {
                for i in 0..10 {
                    update_registry(&library, |doc| {
                        let mut e = serde_json::Map::new();
                        e.insert("id".into(), json!(format!("t{t}-{i}")));
                        upsert_entry(doc, e)
                    })
                    .unwrap();
                }
            });
        }
    });
    let reg = load(&lib).unwrap();
    assert_eq!(reg.entries.len(), 40);
    assert!(reg.problems.is_empty());
}

#[test]
fn default_library_starts_with_the_builtin_catalog() {
    let lib = TestLib::new();
    let root = lib.path("fresh/library");
    let library = model_library::library::Library::new(&root);
    model_library::library::init_default(&library).unwrap();
    let reg = Registry::load(&library).unwrap();
    assert!(reg.entries.len() >= 10, "{}", reg.entries.len());
    assert!(reg.problems.is_empty(), "{:?}", reg.problems);
    for e in &reg.entries {
        assert!(e.problem.is_none(), "{}: {:?}", e.id, e.problem);
        assert!(!e.files.is_empty());
        for f in &e.files {
            let url = f.url().unwrap();
            assert!(
                url.starts_with("https://") && url.ends_with(&f.path),
                "{url}"
            );
        }
    }
    assert!(root.join("models").is_dir());
    // A second start does not overwrite a registry the user changed.
    fs::write(
        root.join("model_registry.json"),
        r#"{"version":1,"models":[]}"#,
    )
    .unwrap();
    model_library::library::init_default(&library).unwrap();
    assert!(Registry::load(&library).unwrap().entries.is_empty());
}

/// The registry's name field of `id` as the service lists it (a fresh service each time).
fn listed_name(lib: &TestLib, id: &str) -> String {
    let (mut svc, _) = lib.service();
    let listing = svc.list(ListKind::Full, true).unwrap();
    let name = listing
        .models
        .iter()
        .find(|m| m.id == id)
        .unwrap()
        .name
        .clone();
    svc.flush_saves();
    name.to_string()
}

fn set_mtime(path: &std::path::Path, ago: std::time::Duration) {
    set_mtime_to(path, std::time::SystemTime::now() - ago);
}

fn set_mtime_to(path: &std::path::Path, when: std::time::SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn a_settled_registry_is_read_from_its_binary_copy_while_its_stamp_is_unchanged() {
    let lib = TestLib::new();
    let registry = |name: &str| {
        json!({"version": 1, "models": [{"id": "m", "name": name, "files": [{"path": "w.bin", "size": 4}]}]})
            .to_string()
    };
    lib.registry(&registry("Alpha")).file("models/m/w.bin", 4);
    let file = lib.path("model_registry.json");
    let copy = lib.path(".cache/registry.bin");
    set_mtime(&file, std::time::Duration::from_secs(60));
    let stamp = fs::metadata(&file).unwrap().modified().unwrap();
    assert_eq!(listed_name(&lib, "m"), "Alpha");
    assert!(copy.exists(), "a settled registry gets a copy");

    // Same size, same inode, same modification time: the copy is what is read. (This is
    // the copy's trust rule, shown by a registry edited behind its back.)
    fs::write(&file, registry("Omega")).unwrap();
    set_mtime_to(&file, stamp);
    assert_eq!(listed_name(&lib, "m"), "Alpha");

    // Any real change moves the stamp: the JSON is parsed again, and the copy replaced.
    set_mtime(&file, std::time::Duration::from_secs(30));
    assert_eq!(listed_name(&lib, "m"), "Omega");
    set_mtime_to(&file, stamp);
    assert_eq!(listed_name(&lib, "m"), "Omega", "the copy was made again");
}

#[test]
fn a_damaged_copy_is_ignored_and_made_again() {
    let lib = TestLib::new();
    lib.registry(&common::registry_json(&[("a", &[("w.bin", 4)])]))
        .file("models/a/w.bin", 4);
    set_mtime(
        &lib.path("model_registry.json"),
        std::time::Duration::from_secs(60),
    );
    assert_eq!(listed_name(&lib, "a"), "a");
    let copy = lib.path(".cache/registry.bin");
    let good = fs::read(&copy).unwrap();
    for bad in [b"garbage".to_vec(), good[..good.len() / 2].to_vec(), {
        let mut b = good.clone();
        let last = b.len() - 3;
        b[last] ^= 0xff;
        b
    }] {
        fs::write(&copy, &bad).unwrap();
        let (mut svc, _) = lib.service();
        let listing = svc.list(ListKind::Full, true).unwrap();
        svc.flush_saves(); // the copy is made by the service's saver thread
        assert_eq!(listing.models.len(), 1);
        assert_eq!(listing.models[0].status, ModelStatus::Downloaded);
        assert_eq!(fs::read(&copy).unwrap(), good, "made again from the JSON");
    }
}

#[test]
fn a_registry_changed_within_the_settling_time_gets_no_copy() {
    use model_library::library::{
        Clock, ManualClock, ModelLibraryService, ServiceOptions, SystemClock,
    };
    let lib = TestLib::new();
    lib.registry(&common::registry_json(&[("a", &[("w.bin", 4)])]))
        .file("models/a/w.bin", 4);
    let mut svc = ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            clock: std::sync::Arc::new(ManualClock::new(SystemClock.now())),
            ..ServiceOptions::default()
        },
    )
    .unwrap();
    assert_eq!(svc.list(ListKind::Full, true).unwrap().models.len(), 1);
    svc.flush_saves();
    assert!(!lib.path(".cache/registry.bin").exists());
}
