//! The HTTP API (SPEC §7) through a real client: the seed's four curl examples, filters and
//! the view cache, every kind of bad input (4xx, JSON error, nothing changed), deletes,
//! 32 clients listing during repeated refreshes, a taken port, and `model-library serve`
//! shutting down on Ctrl-C. Servers run on ephemeral ports of 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use common::TestLib;
use model_library::library::ManualClock;
use model_library::server::{self, ServerHandle};
use serde_json::{Value, json};

/// A running server over a test library, and a client that reads error bodies too.
struct Api {
    server: ServerHandle,
    agent: ureq::Agent,
    _clock: ManualClock,
}

/// An answer: status, body as JSON, and the headers we look at.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    content_type: String,
    allow: Option<String>,
    served_from: Option<String>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

impl Api {
    fn start(lib: &TestLib) -> Api {
        let (service, clock) = lib.service();
        let server = server::start(service, 0).expect("start the server");
        assert!(server.local_addr().ip().is_loopback());
        Api {
            server,
            agent: agent(),
            _clock: clock,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    fn get(&self, path: &str) -> Answer {
        answer(self.agent.get(self.url(path)).call())
    }

    fn delete(&self, path: &str) -> Answer {
        answer(self.agent.delete(self.url(path)).call())
    }

    fn post_empty(&self, path: &str) -> Answer {
        answer(self.agent.post(self.url(path)).send_empty())
    }

    fn post_json(&self, path: &str, body: &str) -> Answer {
        self.post_raw(path, Some("application/json"), body)
    }

    fn post_raw(&self, path: &str, content_type: Option<&str>, body: &str) -> Answer {
        let mut request = self.agent.post(self.url(path));
        if let Some(ct) = content_type {
            request = request.header("Content-Type", ct);
        }
        answer(request.send(body))
    }

    fn ttl(&self) -> u64 {
        let info = self.get("/api/models/cache-info");
        assert_eq!(info.status, 200, "{info:?}");
        info.body["service_cache"]["cache_ttl_seconds"]
            .as_u64()
            .unwrap()
    }

    fn view_keys(&self) -> Vec<String> {
        let info = self.get("/api/models/cache-info");
        assert_eq!(info.status, 200, "{info:?}");
        serde_json::from_value(info.body["api_cache"]["api_cache_keys"].clone()).unwrap()
    }
}

fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = result.expect("the server answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let content_type = header("content-type").unwrap_or_default();
    let allow = header("allow");
    let served_from = header("x-served-from");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("read the body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    Answer {
        status,
        body,
        content_type,
        allow,
        served_from,
    }
}

/// Checks a 4xx answer with a JSON `{"error": "…"}` body containing `needle`.
#[track_caller]
fn assert_error(a: &Answer, status: u16, needle: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert!(a.content_type.starts_with("application/json"), "{a:?}");
    let message = a.body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error string: {a:?}"));
    assert!(!message.is_empty());
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "{message:?} should mention {needle:?}"
    );
    assert_eq!(a.body.as_object().unwrap().len(), 1, "{a:?}");
}

fn ids(a: &Answer) -> Vec<String> {
    a.body["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

/// alpha: huggingface, chat + text-generation, downloaded (10 bytes).
/// beta: ollama, embedding, available (nothing on disk).
/// gamma: huggingface, chat, partial (one of two files).
/// loose: unregistered, downloaded (5 bytes).
fn sample() -> TestLib {
    let lib = TestLib::new();
    let registry = json!({
        "version": 1,
        "models": [
            {"id": "alpha", "provider": "huggingface", "capabilities": ["chat", "text-generation"],
             "files": [{"path": "w.bin", "size": 10}]},
            {"id": "beta", "provider": "ollama", "capabilities": ["embedding"],
             "files": [{"path": "e.gguf", "size": 20}]},
            {"id": "gamma", "provider": "huggingface", "capabilities": ["chat"],
             "files": [{"path": "a.bin", "size": 4}, {"path": "b.bin", "size": 6}]},
        ]
    });
    lib.registry(&registry.to_string())
        .file("models/alpha/w.bin", 10)
        .file("models/gamma/a.bin", 4)
        .file("models/loose/x.gguf", 5)
        .file("outside.txt", 3);
    lib
}

#[test]
fn the_seeds_four_curl_examples() {
    let lib = sample();
    let api = Api::start(&lib);

    // curl -X POST http://localhost:8000/api/models/refresh
    let r = api.post_empty("/api/models/refresh");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.content_type.starts_with("application/json"));
    assert_eq!(
        keys(&r.body),
        ["message", "cache_info", "api_cache_cleared"]
    );
    assert_eq!(r.body["message"], "Model cache refreshed successfully");
    assert_eq!(r.body["api_cache_cleared"], true);
    let ci = &r.body["cache_info"];
    assert_eq!(
        keys(ci),
        [
            "cache_refreshed",
            "timestamp",
            "old_model_count",
            "new_model_count",
            "cache_keys"
        ]
    );
    assert_eq!(ci["cache_refreshed"], true);
    assert!(ci["timestamp"].as_f64().unwrap() > 1.7e9);
    assert_eq!(ci["old_model_count"], 0);
    assert_eq!(ci["new_model_count"], 4);
    assert_eq!(ci["cache_keys"], json!(["all", "fast"]));

    // A second refresh counts the models it replaced.
    let r = api.post_empty("/api/models/refresh");
    assert_eq!(r.body["cache_info"]["old_model_count"], 4);

    // curl http://localhost:8000/api/models/cache-info
    let r = api.get("/api/models/cache-info");
    assert_eq!(r.status, 200, "{r:?}");
    let sc = &r.body["service_cache"];
    for field in [
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
            sc.get(field).is_some(),
            "service_cache.{field} missing: {sc}"
        );
    }
    assert_eq!(sc["cache_valid"], true);
    assert_eq!(sc["cache_ttl_seconds"], 300);
    assert_eq!(sc["cached_model_count"], 4);
    assert_eq!(sc["cache_keys"], json!(["all", "fast"]));
    assert!(sc["registry_mtime"].as_f64().unwrap() > 1.7e9);
    assert!(sc["models_dir_mtime"].as_f64().unwrap() > 1.7e9);
    let ac = &r.body["api_cache"];
    for field in ["api_cache_keys", "api_cache_entries", "hits", "misses"] {
        assert!(ac.get(field).is_some(), "api_cache.{field} missing: {ac}");
    }
    assert_eq!(
        ac["api_cache_entries"], 0,
        "a refresh clears the view cache"
    );

    // curl -X POST .../cache-config -H "Content-Type: application/json" -d '{"ttl_seconds": 600}'
    let r = api.post_json("/api/models/cache-config", r#"{"ttl_seconds": 600}"#);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        json!({"message": "Cache TTL set to 600 seconds", "ttl_seconds": 600})
    );
    assert_eq!(api.ttl(), 600);

    // curl "http://localhost:8000/api/models/library?force_refresh=true"
    let r = api.get("/api/models/library?force_refresh=true");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(keys(&r.body), ["models", "total", "cache_hit"]);
    assert_eq!(r.body["total"], 4);
    assert_eq!(r.body["cache_hit"], false);
    assert_eq!(ids(&r), ["alpha", "beta", "gamma", "loose"]);
    let alpha = &r.body["models"][0];
    for field in common::MODEL_INFO_FIELDS {
        assert!(
            alpha.get(field).is_some(),
            "ModelInfo.{field} missing: {alpha}"
        );
    }
    let statuses: Vec<&str> = r.body["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["downloaded", "available", "partial", "downloaded"]
    );
    assert_eq!(alpha["size_bytes"], 10);
    assert_eq!(r.body["models"][3]["provider"], "local");

    // The same plain request again is answered from the view cache.
    let again = api.get("/api/models/library");
    assert_eq!(
        (again.status, &again.body["cache_hit"]),
        (200, &json!(true))
    );
    assert_eq!(again.body["models"], r.body["models"]);
    let again = api.get("/api/models/library");
    assert_eq!(again.body["cache_hit"], true);
    assert_eq!(
        api.view_keys(),
        ["quick=false|provider=None|status=None|capability=None"]
    );
    let info = api.get("/api/models/cache-info").body;
    assert_eq!(info["api_cache"]["hits"], 2);
    assert_eq!(info["api_cache"]["misses"], 1);
    assert_eq!(info["service_cache"]["cache_ttl_seconds"], 600);
}

#[test]
fn filters_quick_and_view_cache_keys() {
    let lib = sample();
    let api = Api::start(&lib);
    let list = |query: &str| {
        let a = api.get(&format!("/api/models/library{query}"));
        assert_eq!(a.status, 200, "{query}: {a:?}");
        assert_eq!(a.body["total"].as_u64().unwrap() as usize, ids(&a).len());
        a
    };

    assert_eq!(ids(&list("?provider=huggingface")), ["alpha", "gamma"]);
    assert_eq!(ids(&list("?provider=HuggingFace")), ["alpha", "gamma"]);
    assert_eq!(ids(&list("?status=available")), ["beta"]);
    assert_eq!(ids(&list("?status=Downloaded")), ["alpha", "loose"]);
    assert_eq!(ids(&list("?capability=CHAT")), ["alpha", "gamma"]);
    assert_eq!(
        ids(&list(
            "?provider=huggingface&status=partial&capability=chat"
        )),
        ["gamma"]
    );
    assert_eq!(ids(&list("?provider=nobody")), Vec::<String>::new());
    assert_eq!(
        list("?provider=").body["total"],
        4,
        "an empty filter is none"
    );

    let quick = list("?quick=true");
    assert_eq!(quick.body["total"], 4);
    assert!(
        quick.body["models"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["size_bytes"].is_null() && m["file_count"].is_null())
    );
    assert_eq!(list("?quick=1").body["cache_hit"], true);
    assert_eq!(list("?quick=TRUE&force_refresh=0").body["cache_hit"], true);
    let forced = list("?quick=true&force_refresh=True");
    assert_eq!(forced.body["cache_hit"], false);

    let mut view_keys = api.view_keys();
    view_keys.sort();
    assert_eq!(
        view_keys,
        [
            "quick=false|provider=HuggingFace|status=None|capability=None",
            "quick=false|provider=None|status=None|capability=CHAT",
            "quick=false|provider=None|status=None|capability=None",
            "quick=false|provider=None|status=available|capability=None",
            "quick=false|provider=None|status=downloaded|capability=None",
            "quick=false|provider=huggingface|status=None|capability=None",
            "quick=false|provider=huggingface|status=partial|capability=chat",
            "quick=false|provider=nobody|status=None|capability=None",
            "quick=true|provider=None|status=None|capability=None",
        ]
    );
}

#[test]
fn bad_list_queries_are_400_and_change_nothing() {
    let lib = sample();
    let api = Api::start(&lib);
    let before = api.get("/api/models/cache-info").body;
    for (query, needle) in [
        ("?status=broken", "broken"),
        ("?status=downloadedd", "expected one of"),
        ("?quick=yes", "quick"),
        ("?quick=", "quick"),
        ("?force_refresh=2", "force_refresh"),
        ("?force_refresh=truee", "force_refresh"),
        ("?provder=huggingface", "provder"),
        ("?quick=true&quick=false", "more than once"),
    ] {
        assert_error(
            &api.get(&format!("/api/models/library{query}")),
            400,
            needle,
        );
    }
    let after = api.get("/api/models/cache-info").body;
    assert_eq!(after["api_cache"], before["api_cache"], "no view was built");
    assert_eq!(
        after["service_cache"]["misses"],
        before["service_cache"]["misses"]
    );
}

#[test]
fn endpoints_that_take_no_parameters_refuse_unknown_ones() {
    let lib = sample();
    let api = Api::start(&lib);
    let ttl = api.ttl();
    assert_error(
        &api.get("/api/models/cache-info?x=1"),
        400,
        "unknown query parameter \"x\"; expected none",
    );
    assert_error(
        &api.post_empty("/api/models/refresh?x=1"),
        400,
        "unknown query parameter \"x\"",
    );
    assert_error(
        &api.post_json("/api/models/cache-config?x=1", r#"{"ttl_seconds": 700}"#),
        400,
        "unknown query parameter \"x\"",
    );
    // gamma has no URL: without the parameter check this would be a 409.
    assert_error(
        &api.post_json("/api/models/download?x=1", r#"{"model_id": "gamma"}"#),
        400,
        "unknown query parameter \"x\"",
    );
    assert_eq!(api.ttl(), ttl, "cache-config?x=1 changed nothing");
    assert!(!lib.path(".downloads").exists());
    let info = api.get("/api/models/cache-info").body;
    assert_eq!(
        info["service_cache"]["cache_timestamp"],
        Value::Null,
        "refresh?x=1 scanned nothing: {info}"
    );
}

#[test]
fn bad_cache_config_is_4xx_and_keeps_the_ttl() {
    let lib = sample();
    let api = Api::start(&lib);
    assert_eq!(
        api.post_json("/api/models/cache-config", r#"{"ttl_seconds": 600}"#)
            .status,
        200
    );
    let json = Some("application/json");
    let cases: &[(Option<&str>, &str, u16, &str)] = &[
        (json, r#"{"ttl_seconds": "#, 400, "malformed JSON"),
        (json, "not json", 400, "malformed JSON"),
        (
            json,
            r#"{"ttl_seconds": 60} trailing"#,
            400,
            "malformed JSON",
        ),
        (json, "", 400, "empty"),
        (json, "   ", 400, "empty"),
        (json, "{}", 400, "missing field"),
        (json, r#"{"ttl": 60}"#, 400, "unknown field"),
        (json, r#"{"ttl_seconds": 60, "x": 1}"#, 400, "unknown field"),
        (json, r#"[{"ttl_seconds": 60}]"#, 400, "JSON object"),
        (json, "60", 400, "JSON object"),
        (json, r#"{"ttl_seconds": "60"}"#, 400, "a string"),
        (json, r#"{"ttl_seconds": 60.5}"#, 400, "a number"),
        (json, r#"{"ttl_seconds": 60.0}"#, 400, "whole number"),
        (json, r#"{"ttl_seconds": 1e3}"#, 400, "whole number"),
        (json, r#"{"ttl_seconds": true}"#, 400, "a boolean"),
        (json, r#"{"ttl_seconds": null}"#, 400, "null"),
        (json, r#"{"ttl_seconds": [60]}"#, 400, "an array"),
        (json, r#"{"ttl_seconds": -60}"#, 400, "30..=3600"),
        (json, r#"{"ttl_seconds": 0}"#, 400, "30..=3600"),
        (json, r#"{"ttl_seconds": 29}"#, 400, "30..=3600"),
        (json, r#"{"ttl_seconds": 3601}"#, 400, "30..=3600"),
        (
            json,
            r#"{"ttl_seconds": 18446744073709551615}"#,
            400,
            "whole number",
        ),
        (
            json,
            r#"{"ttl_seconds": 99999999999999999999999}"#,
            400,
            "whole number",
        ),
        (None, r#"{"ttl_seconds": 60}"#, 415, "Content-Type"),
        (
            Some("text/plain"),
            r#"{"ttl_seconds": 60}"#,
            415,
            "text/plain",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "ttl_seconds=60",
            415,
            "Content-Type",
        ),
    ];
    for (content_type, body, status, needle) in cases {
        let a = api.post_raw("/api/models/cache-config", *content_type, body);
        assert_error(&a, *status, needle);
        assert_eq!(api.ttl(), 600, "{body:?} changed the TTL");
    }
    let huge = format!(r#"{{"ttl_seconds": 60, "pad": "{}"}}"#, "x".repeat(100_000));
    assert_error(
        &api.post_json("/api/models/cache-config", &huge),
        413,
        "length limit",
    );
    assert_eq!(api.ttl(), 600);

    // The bounds themselves are accepted, and charset parameters are fine.
    for ttl in [30, 3600] {
        let a = api.post_raw(
            "/api/models/cache-config",
            Some("application/json; charset=utf-8"),
            &format!(r#"{{"ttl_seconds": {ttl}}}"#),
        );
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body["ttl_seconds"], ttl);
        assert_eq!(a.body["message"], format!("Cache TTL set to {ttl} seconds"));
        assert_eq!(api.ttl(), ttl);
    }
}

#[test]
fn delete_a_model_folder_over_http() {
    let lib = sample();
    let api = Api::start(&lib);
    assert_eq!(api.get("/api/models/library").body["total"], 4);

    // Unregistered: the folder goes and so does the row.
    let a = api.delete("/api/models/loose?permanent=true");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        keys(&a.body),
        ["message", "model_id", "freed_bytes", "trashed"]
    );
    assert_eq!(a.body["model_id"], "loose");
    assert_eq!(a.body["freed_bytes"], 5);
    assert_eq!(a.body["trashed"], false);
    assert!(a.body["message"].as_str().unwrap().contains("loose"));
    assert!(!lib.path("models/loose").exists());
    let listing = api.get("/api/models/library");
    assert_eq!(listing.body["cache_hit"], false, "the delete invalidated");
    assert_eq!(ids(&listing), ["alpha", "beta", "gamma"]);

    // Registered: the row stays, `available`.
    let a = api.delete("/api/models/alpha?permanent=1");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["freed_bytes"], 10);
    assert!(!lib.path("models/alpha").exists());
    let listing = api.get("/api/models/library");
    assert_eq!(listing.body["models"][0]["id"], "alpha");
    assert_eq!(listing.body["models"][0]["status"], "available");

    // Nothing (left) on disk: 404.
    assert_error(
        &api.delete("/api/models/alpha?permanent=true"),
        404,
        "nothing on disk",
    );
    assert_error(&api.delete("/api/models/nope?permanent=true"), 404, "nope");
    assert_error(&api.delete("/api/models/beta"), 404, "beta");
}

#[test]
fn hostile_and_bad_deletes_are_4xx_and_delete_nothing() {
    let lib = sample();
    let api = Api::start(&lib);
    for path in [
        "/api/models/..?permanent=true",
        "/api/models/.x?permanent=true",
        "/api/models/%2E%2E?permanent=true",
        "/api/models/a%2Fb?permanent=true",
        "/api/models/..%2F..%2Foutside.txt?permanent=true",
        "/api/models/%2Fetc?permanent=true",
        "/api/models/.cache?permanent=true",
        "/api/models/gamma%00?permanent=true",
        "/api/models/a%20b?permanent=true",
    ] {
        assert_error(&api.delete(path), 400, "invalid model id");
    }
    assert_error(&api.delete("/api/models/%FF"), 400, "invalid model id");
    assert_error(
        &api.delete("/api/models/gamma?permanent=maybe"),
        400,
        "permanent",
    );
    assert_error(&api.delete("/api/models/gamma?force=true"), 400, "force");
    for kept in [
        "models/alpha/w.bin",
        "models/gamma/a.bin",
        "models/loose/x.gguf",
        "outside.txt",
    ] {
        assert!(lib.path(kept).exists(), "{kept} was deleted");
    }
    assert_eq!(api.get("/api/models/library").body["total"], 4);
}

#[test]
fn a_model_named_like_an_endpoint_can_be_deleted() {
    let lib = sample();
    lib.file("models/library/w", 2).file("models/refresh/w", 3);
    let api = Api::start(&lib);
    let a = api.delete("/api/models/library?permanent=true");
    assert_eq!(
        (a.status, &a.body["freed_bytes"]),
        (200, &json!(2)),
        "{a:?}"
    );
    let a = api.delete("/api/models/refresh?permanent=true");
    assert_eq!(
        (a.status, &a.body["freed_bytes"]),
        (200, &json!(3)),
        "{a:?}"
    );
    assert_error(
        &api.delete("/api/models/cache-info"),
        404,
        "nothing on disk",
    );
    assert!(!lib.path("models/library").exists());
    assert!(lib.path("models/alpha/w.bin").exists());
}

#[test]
fn download_requests_are_validated() {
    let lib = sample();
    let api = Api::start(&lib);
    let path = "/api/models/download";
    assert_error(
        &api.post_json(path, r#"{"model_id": "#),
        400,
        "malformed JSON",
    );
    assert_error(&api.post_json(path, "{}"), 400, "missing field");
    assert_error(&api.post_json(path, r#"{"model_id": 5}"#), 400, "a number");
    assert_error(&api.post_json(path, r#"{"model_id": null}"#), 400, "null");
    assert_error(
        &api.post_json(path, r#"{"model_id": "../x"}"#),
        400,
        "invalid model id",
    );
    assert_error(
        &api.post_json(path, r#"{"model_id": ".hidden"}"#),
        400,
        "invalid model id",
    );
    assert_error(
        &api.post_json(path, r#"{"model_id": "nope"}"#),
        404,
        "not in the registry",
    );
    assert_error(
        &api.post_json(path, r#"{"model_id": "loose"}"#),
        404,
        "not in the registry",
    );
    assert_error(
        &api.post_raw(path, None, r#"{"model_id": "beta"}"#),
        415,
        "Content-Type",
    );
    // Registered, but its file has no URL: a conflict, and nothing starts.
    assert_error(
        &api.post_json(path, r#"{"model_id": "beta"}"#),
        409,
        "has no URL",
    );
    assert!(!lib.path("models/beta").exists());
    assert!(!lib.path(".downloads").exists());
}

#[test]
fn a_download_over_the_api_lands_and_shows_downloaded() {
    use common::http::{Behavior, TestServer};
    let lib = TestLib::new();
    let files = TestServer::start();
    files.route("/w.gguf", vec![3u8; 40_000], Behavior::Normal);
    lib.registry(
        &json!({"version": 1, "models": [
            {"id": "fetch", "files": [{"path": "w.gguf", "url": files.url("/w.gguf"), "size": 40_000}]}
        ]})
        .to_string(),
    );
    let api = Api::start(&lib);
    let a = api.post_json("/api/models/download", r#"{"model_id": "fetch"}"#);
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(a.body["id"], "fetch");
    assert_eq!(a.body["status"], "downloading");
    // The server hands the ended download to the service by itself: poll the listing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let list = api.get("/api/models/library");
        if list.body["models"][0]["status"] == "downloaded" {
            assert_eq!(list.body["models"][0]["size_bytes"], 40_000);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never downloaded: {list:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read(lib.path("models/fetch/w.gguf"))
            .unwrap()
            .len(),
        40_000
    );
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405_in_json() {
    let lib = sample();
    let api = Api::start(&lib);
    assert_error(&api.get("/"), 404, "GET /");
    assert_error(&api.get("/api/models"), 404, "/api/models");
    assert_error(&api.get("/api/models/"), 404, "no endpoint");
    assert_error(&api.get("/api/models/library/extra"), 404, "no endpoint");
    assert_error(&api.post_empty("/api/nope"), 404, "POST /api/nope");

    let a = api.post_empty("/api/models/library");
    assert_error(&a, 405, "POST");
    let allow = a.allow.clone().unwrap();
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    assert_error(&api.get("/api/models/refresh"), 405, "GET");
    assert_error(&api.get("/api/models/cache-config"), 405, "GET");
    assert_error(&api.get("/api/models/download"), 405, "GET");
    assert_error(&api.post_empty("/api/models/cache-info"), 405, "POST");
    assert_error(&api.get("/api/models/alpha"), 405, "GET");
    assert_error(
        &answer(api.agent.put(api.url("/api/models/alpha")).send_empty()),
        405,
        "PUT",
    );
    assert_error(
        &answer(api.agent.patch(api.url("/api/models/library")).send_empty()),
        405,
        "PATCH",
    );
    assert!(lib.path("models/alpha/w.bin").exists());
}

#[test]
fn a_library_the_service_cannot_read_is_503_naming_the_file() {
    let lib = sample();
    let api = Api::start(&lib);
    assert_eq!(api.get("/api/models/library").status, 200);

    lib.registry("{\"version\": 1, \"models\": [");
    let a = api.get("/api/models/library");
    assert_error(&a, 503, "model_registry.json");
    assert_error(
        &api.post_empty("/api/models/refresh"),
        503,
        "model_registry.json",
    );
    assert_error(
        &api.post_json("/api/models/download", r#"{"model_id": "beta"}"#),
        503,
        "model_registry.json",
    );
    let info = api.get("/api/models/cache-info");
    assert_eq!(info.status, 200);
    assert!(
        info.body["service_cache"]["last_error"]
            .as_str()
            .unwrap()
            .contains("model_registry.json")
    );

    let root = lib.root().to_path_buf();
    // The server may still be saving its listing into `.cache/` (a file appearing while
    // the tree is removed): remove again until it is gone, within a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = std::fs::remove_dir_all(&root) {
        assert!(
            e.kind() == std::io::ErrorKind::DirectoryNotEmpty && Instant::now() < deadline,
            "{e}"
        );
    }
    assert_error(
        &api.get("/api/models/library?force_refresh=true"),
        503,
        &root.display().to_string(),
    );
}

/// 32 clients list while another client refreshes: every answer is 200 and whole, and
/// every listing is accounted for in `cache-info`.
#[test]
fn thirty_two_clients_list_while_another_refreshes() {
    const CLIENTS: usize = 32;
    const LISTS: usize = 25;
    const REFRESHES: usize = 20;
    const MODELS: usize = 120;
    let lib = TestLib::new();
    let mut expected = BTreeMap::new();
    for i in 0..MODELS {
        let id = format!("m{i:03}");
        lib.file(&format!("models/{id}/w.bin"), i + 1)
            .file(&format!("models/{id}/sub/c.json"), 7);
        expected.insert(id, (i + 1 + 7) as u64);
    }
    let expected = Arc::new(expected);
    let api = Api::start(&lib);
    let url = api.server.url();
    assert_eq!(api.get("/api/models/library").body["total"], MODELS);

    // The clients and the refresher start together.
    let start = Arc::new(Barrier::new(CLIENTS + 1));
    let refresher = {
        let (start, url) = (Arc::clone(&start), url.clone());
        std::thread::spawn(move || {
            let agent = agent();
            start.wait();
            for _ in 0..REFRESHES {
                let a = answer(agent.post(format!("{url}/api/models/refresh")).send_empty());
                assert_eq!(a.status, 200, "{a:?}");
                assert_eq!(a.body["cache_info"]["new_model_count"], MODELS);
                assert_eq!(a.body["cache_info"]["old_model_count"], MODELS);
            }
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (start, url, expected) = (Arc::clone(&start), url.clone(), Arc::clone(&expected));
            std::thread::spawn(move || {
                let agent = agent();
                start.wait();
                let mut from_snapshot = 0;
                for _ in 0..LISTS {
                    let a = answer(agent.get(format!("{url}/api/models/library")).call());
                    assert_eq!(a.status, 200, "{a:?}");
                    let models = a.body["models"].as_array().unwrap();
                    assert_eq!(a.body["total"], MODELS);
                    assert_eq!(models.len(), MODELS);
                    let sizes: BTreeMap<String, u64> = models
                        .iter()
                        .map(|m| {
                            assert_eq!(m["status"], "downloaded", "{m}");
                            assert_eq!(m["file_count"], 2, "{m}");
                            (
                                m["id"].as_str().unwrap().to_string(),
                                m["size_bytes"].as_u64().unwrap(),
                            )
                        })
                        .collect();
                    assert_eq!(&sizes, &*expected);
                    if a.served_from.as_deref() == Some("snapshot") {
                        assert_eq!(a.body["cache_hit"], true);
                        from_snapshot += 1;
                    }
                }
                from_snapshot
            })
        })
        .collect();
    let from_snapshot: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    refresher.join().unwrap();

    // Every listing was answered either by the service (a view hit or miss) or from the
    // snapshot; none was lost or double counted.
    let info = api.get("/api/models/cache-info").body;
    let api_cache = &info["api_cache"];
    let counted = api_cache["hits"].as_u64().unwrap()
        + api_cache["misses"].as_u64().unwrap()
        + api_cache["snapshot_hits"].as_u64().unwrap();
    assert_eq!(counted, (CLIENTS * LISTS + 1) as u64, "{info}");
    assert_eq!(api_cache["snapshot_hits"].as_u64().unwrap(), from_snapshot);
    assert_eq!(info["service_cache"]["cached_model_count"], MODELS);
    assert!(lib.path("models/m000/w.bin").exists());
}

#[test]
fn a_taken_port_is_an_error_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let lib = sample();
    let (service, _) = lib.service();
    let err = server::start(service, port).unwrap_err();
    assert!(err.contains(&port.to_string()), "{err}");
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn shutdown_stops_the_server() {
    let lib = sample();
    let api = Api::start(&lib);
    let addr = api.server.local_addr();
    assert_eq!(api.get("/api/models/cache-info").status, 200);
    let Api { server, agent, .. } = api;
    drop(agent);
    server.shutdown().unwrap();
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(),
        "still listening after shutdown"
    );
}

#[test]
fn serve_prints_its_address_and_stops_on_ctrl_c() {
    let lib = sample();
    let mut child = Command::new(env!("CARGO_BIN_EXE_model-library"))
        .args([
            "--library",
            lib.root().to_str().unwrap(),
            "serve",
            "--port",
            "0",
        ])
        .env_remove("MODEL_LIBRARY_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run model-library serve");
    let (lines_tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("a first line on stderr");
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_ne!(url, "http://127.0.0.1:0");

    let a = answer(agent().get(format!("{url}/api/models/library")).call());
    assert_eq!((a.status, &a.body["total"]), (200, &json!(4)), "{a:?}");

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

/// A minimal GGUF v3 header: no tensors, one key `general.architecture`.
fn gguf_with_architecture(arch: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // tensors
    b.extend_from_slice(&1u64.to_le_bytes()); // key-value pairs
    let key = "general.architecture";
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(&8u32.to_le_bytes()); // a string
    b.extend_from_slice(&(arch.len() as u64).to_le_bytes());
    b.extend_from_slice(arch.as_bytes());
    b
}

#[test]
fn serve_shows_header_metadata_of_a_library_model() {
    let lib = TestLib::new();
    let path = lib.path("models/llm/model.gguf");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, gguf_with_architecture("llama")).unwrap();
    let api = Api::start(&lib);
    // The server's idle ticks read headers in the background; poll until it shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = api.get("/api/models/library");
        assert_eq!(answer.status, 200);
        let model = &answer.body["models"][0];
        assert_eq!(model["id"], "llm");
        if model["metadata"]["architecture"] == "llama" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no header metadata was ever served: {model}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_read_only_library_refuses_writes_with_409_and_says_why() {
    let lib = TestLib::new();
    lib.file("models/keep/w.bin", 10);
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::rename(lib.path("models"), elsewhere.path().join("models")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("models"), lib.path("models")).unwrap();
    let api = Api::start(&lib);
    let listed = api.get("/api/models/library");
    assert_eq!(listed.status, 200, "listing still works");
    assert_eq!(listed.body["models"][0]["id"], "keep");
    let deleted = api.delete("/api/models/keep?permanent=true");
    assert_eq!(deleted.status, 409, "{:?}", deleted.body);
    let message = deleted.body["error"].as_str().unwrap();
    assert!(
        message.contains("writes to this library are off"),
        "{message}"
    );
    assert!(elsewhere.path().join("models/keep/w.bin").exists());
    let info = api.get("/api/models/cache-info");
    assert!(
        info.body["service_cache"]["read_only_reason"]
            .as_str()
            .unwrap()
            .contains("is a symbolic link")
    );
}

#[test]
fn limit_and_offset_page_the_listing_while_total_counts_every_match() {
    let lib = sample();
    let api = Api::start(&lib);
    let all = api.get("/api/models/library");
    assert_eq!(ids(&all), ["alpha", "beta", "gamma", "loose"]);

    let page = api.get("/api/models/library?limit=2");
    assert_eq!(
        (ids(&page), &page.body["total"]),
        (vec!["alpha".into(), "beta".into()], &json!(4))
    );
    let page = api.get("/api/models/library?offset=1&limit=2");
    assert_eq!(ids(&page), ["beta", "gamma"]);
    let page = api.get("/api/models/library?offset=3");
    assert_eq!(ids(&page), ["loose"]);
    let page = api.get("/api/models/library?offset=10");
    assert_eq!((ids(&page).len(), &page.body["total"]), (0, &json!(4)));
    let page = api.get("/api/models/library?limit=0");
    assert_eq!((ids(&page).len(), &page.body["total"]), (0, &json!(4)));
    let page = api.get("/api/models/library?provider=huggingface&limit=1&offset=1");
    assert_eq!(
        (ids(&page), &page.body["total"]),
        (vec!["gamma".into()], &json!(2))
    );
    // An empty value is no value, as for the filters.
    let page = api.get("/api/models/library?limit=&offset=");
    assert_eq!(ids(&page).len(), 4);

    for bad in [
        "limit=-1",
        "limit=two",
        "offset=1.5",
        "offset=99999999999999999999999",
    ] {
        let which = bad.split('=').next().unwrap();
        assert_error(&api.get(&format!("/api/models/library?{bad}")), 400, which);
    }
}

#[test]
fn a_repeated_listing_is_served_from_its_kept_body_until_the_listing_changes() {
    let lib = sample();
    let api = Api::start(&lib);
    let first = api.get("/api/models/library");
    assert_eq!(
        (first.body["cache_hit"].clone(), first.served_from.clone()),
        (json!(false), None)
    );
    let second = api.get("/api/models/library");
    assert_eq!(
        second.served_from.as_deref(),
        Some("kept-body"),
        "{second:?}"
    );
    assert_eq!(second.body["cache_hit"], true);
    let mut expected = first.body.clone();
    expected["cache_hit"] = json!(true);
    assert_eq!(
        second.body, expected,
        "the kept body is the listing's, with cache_hit true"
    );
    // Another filter has a body of its own.
    let chat = api.get("/api/models/library?capability=chat");
    assert_eq!(ids(&chat), ["alpha", "gamma"]);
    assert_ne!(chat.served_from.as_deref(), Some("kept-body"));
    let chat = api.get("/api/models/library?capability=chat");
    assert_eq!(
        (ids(&chat), chat.served_from.as_deref()),
        (vec!["alpha".into(), "gamma".into()], Some("kept-body"))
    );
    // Pages are encoded each time (they are small), never from the kept body.
    let page = api.get("/api/models/library?limit=1");
    assert_eq!((ids(&page).len(), page.served_from.as_deref()), (1, None));

    // A new model folder: a new listing, so the kept bodies are not served again.
    lib.file("models/newcomer/w.gguf", 7);
    let after = api.get("/api/models/library");
    assert!(ids(&after).contains(&"newcomer".to_string()), "{after:?}");
    assert_eq!(after.served_from, None);
    let again = api.get("/api/models/library");
    assert_eq!(
        (
            again.served_from.as_deref(),
            again.body["cache_hit"].clone()
        ),
        (Some("kept-body"), json!(true))
    );
    assert!(ids(&again).contains(&"newcomer".to_string()));
}

#[test]
fn a_large_kept_body_is_sent_plain_in_full_and_the_connection_stays_usable() {
    use model_library::fixtures::{GenSpec, generate_library};
    let lib = TestLib::new();
    let spec = GenSpec {
        models: 600,
        files_per_model: 1,
        file_size: 1,
    };
    generate_library(lib.root(), &spec).unwrap();
    let api = Api::start(&lib);
    let fresh = api.get("/api/models/library");
    assert_eq!(fresh.status, 200);
    // Read raw, to compare lengths: kept bodies are inflated while they are written, over
    // several pieces here (the body is ~300 KB).
    let raw = |path: &str| {
        let mut response = api.agent.get(api.url(path)).call().unwrap();
        let served = response
            .headers()
            .get("x-served-from")
            .map(|v| v.to_str().unwrap().to_string());
        let length: usize = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .unwrap();
        (served, length, body)
    };
    for round in 0..3 {
        let (served, length, body) = raw("/api/models/library");
        assert_eq!(served.as_deref(), Some("kept-body"), "round {round}");
        assert!(body.len() > 200_000, "{}", body.len());
        assert_eq!(length, body.len(), "round {round}");
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["models"], fresh.body["models"], "round {round}");
        assert_eq!(value["cache_hit"], true);
        // The same connection answers the next request.
        assert_eq!(api.get("/api/models/cache-info").status, 200);
        // HEAD says the same length and sends nothing.
        let head = api
            .agent
            .head(api.url("/api/models/library"))
            .call()
            .unwrap();
        assert_eq!(
            head.headers()["content-length"],
            length.to_string().as_str()
        );
    }
}

#[test]
fn listings_are_gzip_encoded_for_clients_that_ask() {
    use std::io::Read;
    let lib = sample();
    let api = Api::start(&lib);
    let plain = api.get("/api/models/library");
    assert_eq!(plain.status, 200);
    for round in 0..3 {
        // First: a miss compressed fresh; then the kept body compressed once; then kept.
        let mut response = api
            .agent
            .get(api.url("/api/models/library"))
            .header("Accept-Encoding", "br;q=1, gzip;q=0.5")
            .call()
            .unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            header("content-encoding").as_deref(),
            Some("gzip"),
            "round {round}"
        );
        assert_eq!(header("vary").as_deref(), Some("accept-encoding"));
        let packed = response.body_mut().read_to_vec().unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_string(&mut text)
            .unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["models"], plain.body["models"], "round {round}");
        assert_eq!(body["cache_hit"], true);
    }
    // Refused gzip: plain.
    let response = api
        .agent
        .get(api.url("/api/models/library"))
        .header("Accept-Encoding", "gzip;q=0")
        .call()
        .unwrap();
    assert!(response.headers().get("content-encoding").is_none());
}

#[test]
fn verify_runs_in_the_background_and_its_findings_show_in_the_listing() {
    let lib = common::fine_and_rotten();
    let api = Api::start(&lib);
    let before = api.get("/api/models/verify");
    assert_eq!(
        (before.status, before.body["running"].clone()),
        (200, json!(false))
    );

    let unknown = api.post_json("/api/models/verify", r#"{"model_ids": ["nope"]}"#);
    assert_error(&unknown, 404, "nope");
    let bad = api.post_json("/api/models/verify", r#"{"model_ids": "fine"}"#);
    assert_error(&bad, 400, "model_ids");

    let started = api.post_json("/api/models/verify", "{}");
    assert_eq!(started.status, 202, "{started:?}");
    assert_eq!(started.body["verify"]["files_total"], 2);
    // Poll (bounded) until the run is in.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        let state = api.get("/api/models/verify");
        if state.body["running"] == false && !state.body["last"].is_null() {
            break state.body["last"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "verify did not finish: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(20)); // a polling rate, not a wait for a condition
    };
    assert_eq!(report["summary"]["files"], 2);
    assert_eq!(report["summary"]["mismatched"], 1);
    assert_eq!(report["problems"][0]["models"], json!(["rotten"]));
    let listing = api.get("/api/models/library");
    let rotten = listing.body["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "rotten")
        .unwrap()
        .clone();
    assert_eq!(rotten["status"], "error", "{rotten}");
    assert!(
        rotten["error"]
            .as_str()
            .unwrap()
            .contains("w.bin: sha256 mismatch")
    );
    let stop = api.post_json("/api/models/verify", r#"{"stop": true}"#);
    assert_eq!(stop.status, 200);
}
