//! Deleting never reaches outside `models/<id>` and `.downloads/<id>`: hostile ids, symlinked
//! model folders, registered vs unregistered models, the trash, and the CLI's confirmation.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};

use common::{TestLib, registry_json};
use model_library::library::{DeleteMode, LibraryError, ListKind, ModelStatus};

#[test]
fn hostile_ids_delete_nothing() {
    let lib = TestLib::new();
    lib.file("models/a/w", 1).file("outside.txt", 1);
    let (mut svc, _) = lib.service();
    for id in ["../x", "a/b", ".", "..", "", "/etc", "a/../..", ".cache"] {
        let err = svc.delete_model(id, DeleteMode::Permanent).unwrap_err();
        assert!(
            matches!(err, LibraryError::InvalidId { .. }),
            "{id:?}: {err}"
        );
    }
    assert!(lib.path("models/a/w").exists());
    assert!(lib.path("outside.txt").exists());
}

#[test]
fn a_symlinked_model_folder_is_unlinked_not_followed() {
    let lib = TestLib::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("precious.bin"), b"keep me").unwrap();
    symlink(outside.path(), lib.path("models/evil")).unwrap();
    let (mut svc, _) = lib.service();
    let outcome = svc.delete_model("evil", DeleteMode::Permanent).unwrap();
    assert_eq!(outcome.removed, vec![lib.path("models/evil")]);
    assert!(fs::symlink_metadata(lib.path("models/evil")).is_err());
    assert_eq!(
        fs::read(outside.path().join("precious.bin")).unwrap(),
        b"keep me"
    );
}

#[test]
fn a_symlinked_model_folder_is_unlinked_even_in_trash_mode() {
    let lib = TestLib::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("precious.bin"), b"keep me").unwrap();
    symlink(outside.path(), lib.path("models/evil")).unwrap();
    let (mut svc, _) = lib.service();
    svc.delete_model("evil", DeleteMode::Trash).unwrap();
    assert!(outside.path().join("precious.bin").exists());
}

#[test]
fn symlinks_inside_a_model_folder_are_not_followed() {
    let lib = TestLib::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("precious.bin"), b"keep me").unwrap();
    lib.file("models/m/w.bin", 4);
    symlink(outside.path(), lib.path("models/m/link-to-outside")).unwrap();
    let (mut svc, _) = lib.service();
    svc.delete_model("m", DeleteMode::Permanent).unwrap();
    assert!(!lib.path("models/m").exists());
    assert!(outside.path().join("precious.bin").exists());
}

#[test]
fn registered_model_becomes_available_unregistered_disappears() {
    let lib = TestLib::new();
    lib.registry(&registry_json(&[("reg", &[("w.bin", 8)])]))
        .file("models/reg/w.bin", 8)
        .file(".downloads/reg/x.part", 2)
        .file("models/loose/w", 5)
        .file("models/keep/w", 1);
    let (mut svc, _) = lib.service();
    svc.list(ListKind::Full, false).unwrap();

    let plan = svc.plan_delete("reg").unwrap();
    assert_eq!((plan.bytes, plan.files, plan.targets.len()), (10, 2, 2));
    let outcome = svc.delete_model("reg", DeleteMode::Permanent).unwrap();
    assert_eq!(outcome.freed_bytes, 10);
    assert!(!lib.path(".downloads/reg").exists());
    svc.delete_model("loose", DeleteMode::Permanent).unwrap();

    let info = svc.cache_info().service_cache;
    assert!(!info.cache_valid, "delete invalidates");
    let listing = svc.list(ListKind::Full, false).unwrap();
    let ids: Vec<_> = listing
        .models
        .iter()
        .map(|m| (m.id.as_str(), m.status))
        .collect();
    assert_eq!(
        ids,
        [
            ("reg", ModelStatus::Available),
            ("keep", ModelStatus::Downloaded)
        ]
    );
}

#[test]
fn deleting_what_is_not_there_is_a_clear_error() {
    let lib = TestLib::new();
    let (mut svc, _) = lib.service();
    let err = svc
        .delete_model("ghost", DeleteMode::Permanent)
        .unwrap_err();
    assert!(matches!(err, LibraryError::NothingToDelete { .. }));
    assert!(err.to_string().contains("ghost"));
}

fn cli(lib: &TestLib, args: &[&str], stdin: &str, xdg: &std::path::Path) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_model-library"))
        .arg("--library")
        .arg(lib.root())
        .args(args)
        .env("XDG_DATA_HOME", xdg)
        .env_remove("HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn cli_delete_asks_for_the_id_and_uses_the_trash() {
    let lib = TestLib::new();
    lib.file("models/victim/w.bin", 6);
    let xdg = lib.path("xdg-data");
    fs::create_dir_all(&xdg).unwrap();

    let out = cli(&lib, &["delete", "victim"], "wrong\n", &xdg);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("6 B") && err.contains("not confirmed"),
        "{err}"
    );
    assert!(lib.path("models/victim/w.bin").exists());

    let out = cli(&lib, &["delete", "victim"], "victim\n", &xdg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!lib.path("models/victim").exists());
    assert!(
        xdg.join("Trash/files/victim/w.bin").exists(),
        "moved to the freedesktop trash"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("moved to the trash; 6 B freed"));
}

#[test]
fn cli_delete_yes_permanent() {
    let lib = TestLib::new();
    lib.file("models/gone/w.bin", 6);
    let xdg = lib.path("xdg-data");
    let out = cli(&lib, &["delete", "gone", "--yes", "--permanent"], "", &xdg);
    assert!(out.status.success());
    assert!(!lib.path("models/gone").exists());
    assert!(!xdg.exists());
    let out = cli(&lib, &["delete", "../etc", "--yes"], "", &xdg);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid model id"));
}
