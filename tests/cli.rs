//! The command line as a user runs it: output shapes, filters and exit statuses.

mod common;

use std::process::{Command, Output};

use common::{TestLib, registry_json};
use serde_json::Value;

fn run(args: &[&str], env_dir: Option<&std::path::Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_model-library"));
    cmd.args(args).env_remove("MODEL_LIBRARY_DIR");
    // No store of this machine (Hugging Face cache, Ollama, LM Studio) leaks into a test.
    for var in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "XDG_CONFIG_HOME",
        "OLLAMA_MODELS",
        "LLAMA_CACHE",
        "JAN_DATA_FOLDER",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", "/nonexistent-home-for-tests");
    if let Some(dir) = env_dir {
        cmd.env("MODEL_LIBRARY_DIR", dir);
    }
    cmd.output().expect("run model-library")
}

/// `args` run (no default library), required to succeed; its stdout as a JSON listing.
fn list_json(args: &[&str]) -> Vec<Value> {
    let out = run(args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample() -> TestLib {
    let lib = TestLib::new();
    lib.registry(&registry_json(&[
        ("alpha", &[("w.bin", 4)]),
        ("beta", &[("w.bin", 4)]),
    ]))
    .file("models/alpha/w.bin", 4)
    .file("models/local-one/x.gguf", 7);
    lib
}

#[test]
fn list_json_reports_model_infos() {
    let lib = sample();
    let out = run(
        &["--library", lib.root().to_str().unwrap(), "list", "--json"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let models: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(models.len(), 3);
    let alpha = &models[0];
    for key in common::MODEL_INFO_FIELDS {
        assert!(alpha.get(key).is_some(), "missing {key}");
    }
    assert_eq!(alpha["status"], "downloaded");
    assert_eq!(alpha["size_bytes"], 4);
    assert_eq!(models[1]["status"], "available");
    assert_eq!(models[2]["id"], "local-one");
    assert_eq!(models[2]["registered"], false);
}

#[test]
fn list_filters_and_quick() {
    let lib = sample();
    let root = lib.root().to_str().unwrap();
    let out = run(
        &["--library", root, "list", "--json", "--status", "available"],
        None,
    );
    let models: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["id"], "beta");

    let out = run(
        &[
            "--library",
            root,
            "list",
            "--json",
            "--provider",
            "local",
            "--quick",
        ],
        None,
    );
    let models: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(models.len(), 1);
    assert!(models[0]["size_bytes"].is_null());

    let out = run(
        &["--library", root, "list", "--json", "--capability", "chat"],
        None,
    );
    let models: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(models.len(), 2);
}

#[test]
fn list_prints_a_table() {
    let lib = sample();
    let out = run(&["--library", lib.root().to_str().unwrap(), "list"], None);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{text}"
    );
    assert!(lines[1].starts_with("alpha") && lines[1].contains("downloaded"));
    assert_eq!(lines.last().unwrap(), &"3 models, 11 B on disk");
}

#[test]
fn cache_info_json_has_the_seed_shape() {
    let lib = sample();
    let out = run(
        &[
            "--library",
            lib.root().to_str().unwrap(),
            "cache-info",
            "--json",
        ],
        None,
    );
    assert!(out.status.success());
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "cache_valid",
        "cache_timestamp",
        "cache_age_seconds",
        "cache_ttl_seconds",
        "cached_model_count",
        "cache_keys",
        "registry_mtime",
        "models_dir_mtime",
        "hits",
        "misses",
    ] {
        assert!(
            info["service_cache"].get(key).is_some(),
            "missing service_cache.{key}"
        );
    }
    for key in ["api_cache_keys", "api_cache_entries", "hits", "misses"] {
        assert!(
            info["api_cache"].get(key).is_some(),
            "missing api_cache.{key}"
        );
    }
    assert_eq!(info["service_cache"]["cache_ttl_seconds"], 300);
    assert!(info["service_cache"]["registry_mtime"].is_f64());
}

#[test]
fn errors_are_one_line_and_exit_1() {
    let lib = TestLib::new();
    lib.registry("{\"version\": 1,\n \"models\": [,]}");
    let out = run(&["--library", lib.root().to_str().unwrap(), "list"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("model_registry.json") && err.contains("line 2"),
        "{err}"
    );

    let out = run(&["--library", "/definitely/not/here", "list"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1);
    assert!(err.contains("/definitely/not/here"), "{err}");
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["list", "--bogus"][..],
        &["list", "--status", "sleeping"],
        &["frobnicate"],
    ] {
        let out = run(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn default_library_comes_from_the_environment_and_gets_the_catalog() {
    let lib = TestLib::new();
    let home = lib.path("default-lib");
    let out = run(&["list", "--json"], Some(&home));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let models: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(models.len() >= 10);
    assert!(models.iter().all(|m| m["status"] == "available"));
    assert!(home.join("model_registry.json").is_file());
}

/// A Hugging Face hub cache in its real layout: snapshot files are symlinks into blobs.
fn hf_cache(root: &std::path::Path) {
    let repo = root.join("models--acme--tiny-model");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    std::fs::write(repo.join("blobs/deadbeef"), vec![0u8; 1234]).unwrap();
    std::os::unix::fs::symlink(
        "../../blobs/deadbeef",
        repo.join("snapshots/abc123/model.safetensors"),
    )
    .unwrap();
}

#[test]
fn the_default_library_lists_other_stores_beside_it() {
    let lib = TestLib::new();
    let home = lib.path("default-lib");
    let hub = lib.path("hub");
    hf_cache(&hub);
    let with_hub = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_model-library"));
        cmd.args(args)
            .env("MODEL_LIBRARY_DIR", &home)
            .env("HF_HUB_CACHE", &hub)
            .env("HOME", "/nonexistent-home-for-tests")
            .env_remove("OLLAMA_MODELS")
            .env_remove("HF_HOME");
        cmd.output().unwrap()
    };
    let out = with_hub(&["list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let models: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let hf: Vec<&Value> = models
        .iter()
        .filter(|m| m["source"] == "huggingface")
        .collect();
    assert_eq!(hf.len(), 1, "{models:#?}");
    assert_eq!(hf[0]["id"], "huggingface/acme/tiny-model");
    assert_eq!(hf[0]["size_bytes"], 1234);
    assert_eq!(hf[0]["status"], "downloaded");
    assert!(models.iter().filter(|m| m["source"] == "library").count() >= 10);

    // --no-sources, or a named library, lists the library alone.
    let out = with_hub(&["--no-sources", "list", "--json"]);
    let models: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(models.iter().all(|m| m["source"] == "library"));
    let out = with_hub(&["--library", home.to_str().unwrap(), "list", "--json"]);
    let models: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(models.iter().all(|m| m["source"] == "library"));

    // Disk usage counts the store's blob once and names what a delete would free.
    let out = with_hub(&["usage", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usage: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(usage["per_source"]["huggingface"], 1234);
    assert_eq!(usage["largest"][0]["id"], "huggingface/acme/tiny-model");
    assert_eq!(usage["largest"][0]["frees_bytes"], 1234);
    let out = with_hub(&["usage"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Largest:"));

    // A store's model cannot be deleted through the library.
    let out = with_hub(&["delete", "huggingface/acme/tiny-model", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(hub.join("models--acme--tiny-model/blobs/deadbeef").exists());
}

/// `--store KIND=DIR` lists a store (here a folder of one's own, even beside a named
/// library), `--no-store KIND` leaves one out, and a bad kind or shape is bad usage.
#[test]
fn stores_are_chosen_on_the_command_line() {
    let lib = sample();
    let tmp = tempfile::tempdir().unwrap();
    let mine = tmp.path().join("mine");
    std::fs::create_dir_all(mine.join("a/b")).unwrap();
    std::fs::write(mine.join("a/b/tiny.gguf"), vec![0u8; 12]).unwrap();
    let root = lib.root().to_str().unwrap();
    let store = format!("folder={}", mine.display());
    let models = list_json(&["--library", root, "--store", &store, "list", "--json"]);
    let found: Vec<&Value> = models.iter().filter(|m| m["source"] == "folder").collect();
    assert_eq!(found.len(), 1, "{models:#?}");
    assert_eq!(found[0]["id"], "folder/a/b/tiny.gguf");
    assert_eq!(found[0]["size_bytes"], 12);

    let out = run(
        &[
            "--library",
            root,
            "--store",
            &store,
            "--no-store",
            "folder",
            "list",
            "--json",
        ],
        None,
    );
    let models: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(models.iter().all(|m| m["source"] == "library"));

    for bad in ["nonsense=/x", "folder", "folder="] {
        let out = run(&["--library", root, "--store", bad, "list"], None);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("KIND=DIR") || err.contains("unknown store") || err.contains("no folder"),
            "{err}"
        );
    }
}

/// `list --fits` keeps the models whose estimated memory fits this machine: a small model
/// with a small cache does, one whose cache alone at 4k tokens is ~4 PiB does not, and one
/// without a header cannot be told and is left out.
#[test]
fn list_fits_keeps_what_this_machine_can_run() {
    let lib = TestLib::new();
    std::fs::create_dir_all(lib.path("models/small")).unwrap();
    std::fs::write(lib.path("models/small/m.gguf"), common::llama_gguf(2, 1)).unwrap();
    std::fs::create_dir_all(lib.path("models/huge")).unwrap();
    std::fs::write(
        lib.path("models/huge/m.gguf"),
        common::llama_gguf(4_000_000, 4_000_000),
    )
    .unwrap();
    lib.file("models/plain/w.bin", 10);
    let root = lib.root().to_str().unwrap();
    let models = list_json(&["--library", root, "list", "--json", "--fits"]);
    let ids: Vec<&str> = models.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["small"], "{models:#?}");
    assert_eq!(models[0]["metadata"]["kv_bytes_per_token"], 2 * 256 * 2);
}

/// A folder of one's own that holds another store and the library lists each model once:
/// under the store's id, or the library's, never again as the folder's.
#[test]
fn a_folder_holding_other_stores_lists_each_model_once() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().to_path_buf();
    std::fs::create_dir_all(top.join("lms/acme/tiny")).unwrap();
    std::fs::write(top.join("lms/acme/tiny/t.gguf"), vec![0u8; 10]).unwrap();
    std::fs::create_dir_all(top.join("mine")).unwrap();
    std::fs::write(top.join("mine/own.gguf"), vec![0u8; 20]).unwrap();
    let folder = format!("folder={}", top.display());
    let lms = format!("lmstudio={}", top.join("lms").display());
    // The library inside the folder too.
    let inner = top.join("library");
    std::fs::create_dir_all(inner.join("models/x")).unwrap();
    std::fs::write(inner.join("models/x/w.gguf"), vec![0u8; 5]).unwrap();
    let models = list_json(&[
        "--library",
        inner.to_str().unwrap(),
        "--store",
        &folder,
        "--store",
        &lms,
        "list",
        "--json",
    ]);
    let mut ids: Vec<&str> = models.iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["folder/mine/own.gguf", "lmstudio/acme/tiny", "x"]);
}

/// A Jan model imported from LM Studio's folder is the same file: both stores list it, and
/// Jan's says it is LM Studio's file (disk usage counts it once).
#[test]
fn a_file_two_stores_list_is_said_to_be_one() {
    let lib = sample();
    let tmp = tempfile::tempdir().unwrap();
    let lms = tmp.path().join("lms");
    let weights = lms.join("acme/tiny/t.gguf");
    std::fs::create_dir_all(weights.parent().unwrap()).unwrap();
    std::fs::write(&weights, vec![0u8; 100]).unwrap();
    let jan = tmp.path().join("jan");
    std::fs::create_dir_all(jan.join("llamacpp/models/tiny")).unwrap();
    std::fs::write(
        jan.join("llamacpp/models/tiny/model.yml"),
        format!("model_path: {}\nname: tiny\n", weights.display()),
    )
    .unwrap();
    let root = lib.root().to_str().unwrap();
    let (s1, s2) = (
        format!("lmstudio={}", lms.display()),
        format!("jan={}", jan.display()),
    );
    let models = list_json(&[
        "--library",
        root,
        "--store",
        &s1,
        "--store",
        &s2,
        "list",
        "--json",
    ]);
    let find = |id: &str| models.iter().find(|m| m["id"] == id).unwrap().clone();
    assert_eq!(
        find("jan/tiny")["note"],
        "the same file as lmstudio/acme/tiny, listed there too"
    );
    assert!(find("lmstudio/acme/tiny")["note"].is_null());
}
