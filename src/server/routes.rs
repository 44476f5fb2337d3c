//! The router, the shared state and one handler per endpoint of SPEC §7. Every service call
//! runs on tokio's blocking pool while holding the service lock; the async threads only
//! parse, wait and write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, State};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::bodies::{self, Bodies, Kept, Page, accepts_gzip};
use super::error::ApiError;
use super::extract::{JsonObject, Params, PathId, json_kind, parse_bool};
use crate::library::SnapshotHandle;
use crate::library::{
    DeleteMode, LibraryError, ListQuery, Listing, ModelInfo, ModelLibraryService, ModelStatus,
    RefreshInfo, Registry, View, validate_id,
};

/// Header set on listings served from the published snapshot while a scan held the service
/// (`snapshot`), or from the body kept for an unchanged listing (`kept-body`).
pub(crate) const SERVED_FROM: HeaderName = HeaderName::from_static("x-served-from");

type Shared = Arc<AppState>;

/// What the handlers share.
struct AppState {
    service: Arc<Mutex<ModelLibraryService>>,
    /// The service's latest full listing, readable without the lock.
    snapshot: SnapshotHandle,
    /// True while the lock holder is a listing or a refresh (which may scan for seconds).
    read_in_progress: AtomicBool,
    /// The snapshot that was current when this server last changed the library (delete,
    /// download): it predates that change, so it is never served again.
    superseded: StdMutex<Weak<Listing>>,
    /// Listings served from the snapshot (they bypass the service's counters).
    snapshot_hits: AtomicU64,
    /// Encoded listing bodies of the current listing, served again while it is current.
    bodies: Bodies,
}

/// What a lock holder does, which decides whether waiting readers may use the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// A listing or refresh: concurrent plain listings get the snapshot.
    Read,
    /// Changes the library: the snapshot is superseded first; readers wait.
    Mutation,
    /// Anything else (quick): readers wait.
    Other,
}

/// Clears `read_in_progress` when the holder is done, even by a panic.
struct ReadMarker<'a>(&'a AtomicBool);

impl<'a> ReadMarker<'a> {
    fn set(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        ReadMarker(flag)
    }
}

impl Drop for ReadMarker<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl AppState {
    fn new(service: ModelLibraryService) -> Self {
        AppState {
            snapshot: service.snapshot_handle(),
            service: Arc::new(Mutex::new(service)),
            read_in_progress: AtomicBool::new(false),
            superseded: StdMutex::new(Weak::new()),
            snapshot_hits: AtomicU64::new(0),
            bodies: Bodies::default(),
        }
    }

    /// Waits for the service (in queue order), then runs `f` on the blocking pool.
    async fn with_service<T, F>(self: &Arc<Self>, hold: Hold, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut ModelLibraryService) -> Result<T, ApiError> + Send + 'static,
    {
        let guard = Arc::clone(&self.service).lock_owned().await;
        self.run_locked(guard, hold, f).await
    }

    /// Runs `f` on the blocking pool with the lock already held; the lock is released
    /// when `f` returns.
    async fn run_locked<T, F>(
        self: &Arc<Self>,
        mut guard: OwnedMutexGuard<ModelLibraryService>,
        hold: Hold,
        f: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut ModelLibraryService) -> Result<T, ApiError> + Send + 'static,
    {
        let state = Arc::clone(self);
        blocking(move || {
            if hold == Hold::Mutation {
                state.supersede_snapshot();
            }
            let marker = (hold == Hold::Read).then(|| ReadMarker::set(&state.read_in_progress));
            let result = f(&mut guard);
            drop(marker);
            drop(guard);
            result
        })
        .await
    }

    /// Marks the current snapshot as older than a change this server is making.
    fn supersede_snapshot(&self) {
        let latest = self.snapshot.latest();
        *self.superseded.lock().unwrap_or_else(|e| e.into_inner()) =
            latest.as_ref().map_or_else(Weak::new, Arc::downgrade);
    }

    /// The snapshot to answer a listing with while the service is busy, if that is honest:
    /// the holder is a listing or refresh (not a change), the request wants the full,
    /// possibly cached listing (not `quick`, not `force_refresh`), a full listing was
    /// published, and it does not predate a change made through this server.
    fn fallback(&self, query: &ListQuery, force_refresh: bool) -> Option<Arc<Listing>> {
        if force_refresh || query.quick || !self.read_in_progress.load(Ordering::SeqCst) {
            return None;
        }
        let latest = self.snapshot.latest()?;
        let superseded = self.superseded.lock().unwrap_or_else(|e| e.into_inner());
        (!std::ptr::eq(superseded.as_ptr(), Arc::as_ptr(&latest))).then_some(latest)
    }
}

/// Runs `f` on tokio's blocking pool; a panic in it answers 500.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("the request failed: {e}"))))
}

/// The API's router over `service`. Bodies over `body_limit` are refused before the router
/// (`conn.rs`); the router's own limit repeats it for requests that reach it another way.
pub(crate) fn router(service: ModelLibraryService, body_limit: usize) -> Router {
    let state = Arc::new(AppState::new(service));
    tokio::spawn(maintain(Arc::clone(&state)));
    // Each fixed path also answers DELETE, so a model whose id is `library`, `refresh`, …
    // can still be deleted, as in the original service.
    Router::new()
        .route(
            "/api/models/library",
            get(list_models).merge(delete_named("library")),
        )
        .route(
            "/api/models/refresh",
            post(refresh).merge(delete_named("refresh")),
        )
        .route(
            "/api/models/cache-info",
            get(cache_info).merge(delete_named("cache-info")),
        )
        .route(
            "/api/models/cache-config",
            post(cache_config).merge(delete_named("cache-config")),
        )
        .route(
            "/api/models/download",
            post(download).merge(delete_named("download")),
        )
        .route(
            "/api/models/verify",
            get(verify_state)
                .post(verify_start)
                .merge(delete_named("verify")),
        )
        .route("/api/models/{id}", delete(delete_by_path))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn json_response(status: StatusCode, body: impl IntoResponse) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::internal(format!("cannot encode JSON: {e}")))
}

async fn no_route(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("no endpoint {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

// ---- GET /api/models/library ----

fn list_params(params: Params) -> Result<(ListQuery, bool, Page), ApiError> {
    let [
        force_refresh,
        quick,
        provider,
        status,
        capability,
        limit,
        offset,
    ] = params.known([
        "force_refresh",
        "quick",
        "provider",
        "status",
        "capability",
        "limit",
        "offset",
    ])?;
    // An empty filter (`provider=`) is no filter, as an HTML form would mean it.
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let query = ListQuery {
        quick: parse_bool("quick", quick.as_deref())?,
        provider: non_empty(provider),
        status: non_empty(status)
            .map(|s| s.parse::<ModelStatus>())
            .transpose()?,
        capability: non_empty(capability),
    };
    let page = Page {
        offset: parse_count("offset", non_empty(offset))?.unwrap_or(0),
        limit: parse_count("limit", non_empty(limit))?,
    };
    Ok((
        query,
        parse_bool("force_refresh", force_refresh.as_deref())?,
        page,
    ))
}

/// A non-negative whole number query parameter.
fn parse_count(name: &str, value: Option<String>) -> Result<Option<usize>, ApiError> {
    value
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter {name:?} must be a whole number of 0 or more, not {v:?}"
                ))
            })
        })
        .transpose()
}

async fn list_models(
    State(state): State<Shared>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let (query, force_refresh, page) = list_params(params)?;
    let gzip = accepts_gzip(&headers);
    let guard = match Arc::clone(&state.service).try_lock_owned() {
        Ok(guard) => guard,
        Err(_) => {
            if let Some(listing) = state.fallback(&query, force_refresh) {
                state.snapshot_hits.fetch_add(1, Ordering::Relaxed);
                let view = View::filter(listing, &query);
                let mut response = state.answer(view, query, page, true, gzip).await?;
                response
                    .headers_mut()
                    .insert(SERVED_FROM, HeaderValue::from_static("snapshot"));
                return Ok(response);
            }
            Arc::clone(&state.service).lock_owned().await
        }
    };
    let result = state
        .run_locked(guard, Hold::Read, {
            let query = query.clone();
            move |service| Ok(service.list_view(&query, force_refresh)?)
        })
        .await?;
    state
        .answer(result.view, query, page, result.cache_hit, gzip)
        .await
}

/// A listing body as the answer, gzip-encoded or not.
fn listing_response(body: Bytes, gzip: bool) -> Response {
    let mut response = json_response(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// The answer of a kept body: as it is to a client that accepts gzip, else inflated while
/// it is written (the connection writer streams a [`Kept`] found in the extensions).
fn kept_response(kept: Kept, gzip: bool) -> Response {
    if gzip {
        return listing_response(kept.gzip, true);
    }
    let mut response = listing_response(Bytes::new(), false);
    response.extensions_mut().insert(kept);
    response
}

impl AppState {
    /// Answers a listing request with `view`: the kept body when the service answered from
    /// its caches and one was kept for this listing and these filters, else a fresh
    /// encoding (kept, compressed, for the next time when it is the whole view). Encoding
    /// and compressing run on the blocking pool, after the service lock was released.
    async fn answer(
        self: &Arc<Self>,
        view: View,
        query: ListQuery,
        page: Page,
        cache_hit: bool,
        gzip: bool,
    ) -> Result<Response, ApiError> {
        let whole = page.is_whole();
        if whole
            && cache_hit
            && let Some(kept) = self.bodies.get(&view, &query)
        {
            let mut response = kept_response(kept, gzip);
            response
                .headers_mut()
                .insert(SERVED_FROM, HeaderValue::from_static("kept-body"));
            return Ok(response);
        }
        let state = Arc::clone(self);
        let body = blocking(move || {
            let fresh = bodies::encode(&view, page, cache_hit)
                .map_err(|e| ApiError::internal(format!("cannot encode JSON: {e}")))?;
            if !whole {
                let packed = gzip.then(|| bodies::gzip(&fresh));
                return Ok(packed.unwrap_or_else(|| Bytes::from(fresh)));
            }
            // Kept before answering, so the next request finds it.
            let kept = bodies::gzip_as_hit(&fresh, cache_hit);
            let answer = match gzip {
                true if cache_hit => kept.gzip.clone(),
                true => bodies::gzip(&fresh),
                false => Bytes::from(fresh),
            };
            state.bodies.put(&view, &query, kept);
            Ok(answer)
        })
        .await?;
        if whole {
            // The encoding's buffers are free now, and so is an older listing's body: give
            // them back, after this answer and off its way.
            tokio::task::spawn_blocking(crate::library::memory::release_free);
        }
        Ok(listing_response(body, gzip))
    }
}

// ---- POST /api/models/refresh ----

#[derive(Serialize)]
struct RefreshBody {
    message: &'static str,
    cache_info: RefreshInfo,
    api_cache_cleared: bool,
}

async fn refresh(State(state): State<Shared>, params: Params) -> Result<Response, ApiError> {
    let [] = params.known([])?;
    let info = state
        .with_service(Hold::Read, |service| Ok(service.refresh()?))
        .await?;
    let body = to_json(&RefreshBody {
        message: "Model cache refreshed successfully",
        cache_info: info,
        api_cache_cleared: true,
    })?;
    Ok(json_response(StatusCode::OK, body))
}

// ---- GET /api/models/cache-info ----

async fn cache_info(State(state): State<Shared>, params: Params) -> Result<Response, ApiError> {
    let [] = params.known([])?;
    let info = state
        .with_service(Hold::Other, |service| Ok(service.cache_info()))
        .await?;
    let mut value = serde_json::to_value(&info)
        .map_err(|e| ApiError::internal(format!("cannot encode JSON: {e}")))?;
    if let Some(api) = value.get_mut("api_cache").and_then(Value::as_object_mut) {
        api.insert(
            "snapshot_hits".into(),
            state.snapshot_hits.load(Ordering::Relaxed).into(),
        );
    }
    Ok(json_response(StatusCode::OK, to_json(&value)?))
}

// ---- POST /api/models/cache-config ----

#[derive(Serialize)]
struct CacheConfigBody {
    message: String,
    ttl_seconds: u64,
}

async fn cache_config(
    State(state): State<Shared>,
    params: Params,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let [] = params.known([])?;
    const EXAMPLE: &str = r#"{"ttl_seconds": 600}"#;
    let body = body.only(&["ttl_seconds"])?;
    let value = body.field("ttl_seconds", EXAMPLE)?;
    let Some(secs) = value.as_i64() else {
        return Err(ApiError::bad_request(format!(
            "\"ttl_seconds\" must be a whole number of seconds, not {} ({value})",
            json_kind(value)
        )));
    };
    let ttl = state
        .with_service(Hold::Other, move |service| Ok(service.set_ttl(secs)?))
        .await?;
    let body = to_json(&CacheConfigBody {
        message: format!("Cache TTL set to {ttl} seconds"),
        ttl_seconds: ttl,
    })?;
    Ok(json_response(StatusCode::OK, body))
}

// ---- POST /api/models/download ----

async fn download(
    State(state): State<Shared>,
    params: Params,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let [] = params.known([])?;
    const EXAMPLE: &str = r#"{"model_id": "some-model"}"#;
    let body = body.only(&["model_id"])?;
    let value = body.field("model_id", EXAMPLE)?;
    let Some(id) = value.as_str() else {
        return Err(ApiError::bad_request(format!(
            "\"model_id\" must be a string, not {} ({value})",
            json_kind(value)
        )));
    };
    validate_id(id)?;
    let id = id.to_string();
    let info = state
        .with_service(Hold::Mutation, move |service| {
            let registry = Registry::load(service.library())?;
            if registry.get(&id).is_none() {
                return Err(ApiError::not_found(format!(
                    "model {id:?} is not in the registry {}",
                    service.library().registry_path().display()
                )));
            }
            Ok(start_download(service, &id)?)
        })
        .await?;
    Ok(json_response(StatusCode::ACCEPTED, to_json(&info)?))
}

/// Starts downloading registered model `id` and answers its ModelInfo (status
/// `downloading`); the transfer runs on the service's download threads.
fn start_download(service: &mut ModelLibraryService, id: &str) -> Result<ModelInfo, LibraryError> {
    service.start_download(id)
}

// ---- GET and POST /api/models/verify ----

/// The answer of `POST /api/models/verify`.
#[derive(Serialize)]
struct VerifyStarted {
    message: &'static str,
    verify: crate::library::VerifyState,
}

/// Starts a verify run: `{}` for every file, `{"model_ids": [...]}` for some models,
/// `{"stop": true}` to stop the running one. 202 with the run's state; 409 while another
/// runs; 404 for an id no listing has.
async fn verify_start(
    State(state): State<Shared>,
    params: Params,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let [] = params.known([])?;
    let body = body.only(&["model_ids", "stop"])?;
    let stop = match body.0.get("stop") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "\"stop\" must be true or false, not {} ({v})",
                json_kind(v)
            )));
        }
    };
    let ids: Vec<String> = match body.0.get("model_ids") {
        None => Vec::new(),
        Some(Value::Array(ids)) if ids.iter().all(Value::is_string) => ids
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "\"model_ids\" must be an array of strings, not {} ({v})",
                json_kind(v)
            )));
        }
    };
    let (message, verify) = state
        .with_service(Hold::Other, move |service| {
            if stop {
                service.stop_verify();
                return Ok(("verify asked to stop", service.verify_state()));
            }
            Ok(("verify started", service.start_verify(&ids)?))
        })
        .await?;
    let status = if stop {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(json_response(
        status,
        to_json(&VerifyStarted { message, verify })?,
    ))
}

/// The running verify's progress and the last run's report.
async fn verify_state(State(state): State<Shared>, params: Params) -> Result<Response, ApiError> {
    let [] = params.known([])?;
    let verify = state
        .with_service(Hold::Other, |service| Ok(service.verify_state()))
        .await?;
    Ok(json_response(StatusCode::OK, to_json(&verify)?))
}

/// How often the service ticks (ended downloads, watched changes, background scans and
/// header metadata; see `ModelLibraryService::tick`).
const MAINTENANCE: std::time::Duration = std::time::Duration::from_millis(200);

/// Runs for the server's life: lets the service tick, so listings reflect what ended or
/// changed; the service itself starts watching (before its first scan) when its options
/// say so. Whatever changed the library retires the published snapshot.
async fn maintain(state: Shared) {
    let mut tick = tokio::time::interval(MAINTENANCE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let inner = Arc::clone(&state);
        let _ = state
            .with_service(Hold::Other, move |service| {
                if service.tick() {
                    inner.supersede_snapshot();
                }
                Ok(())
            })
            .await;
    }
}

// ---- DELETE /api/models/{id} ----

#[derive(Serialize)]
struct DeleteBody {
    message: String,
    model_id: String,
    freed_bytes: u64,
    trashed: bool,
}

/// `DELETE` on one of the fixed paths: the model whose id is that path's last segment.
fn delete_named(id: &'static str) -> MethodRouter<Shared> {
    delete(move |state: State<Shared>, params: Params| delete_model(state, id.to_string(), params))
}

async fn delete_by_path(
    state: State<Shared>,
    PathId(id): PathId,
    params: Params,
) -> Result<Response, ApiError> {
    delete_model(state, id, params).await
}

async fn delete_model(
    State(state): State<Shared>,
    id: String,
    params: Params,
) -> Result<Response, ApiError> {
    let [permanent] = params.known(["permanent"])?;
    let mode = if parse_bool("permanent", permanent.as_deref())? {
        DeleteMode::Permanent
    } else {
        DeleteMode::Trash
    };
    validate_id(&id)?;
    let outcome = state
        .with_service(Hold::Mutation, move |service| {
            Ok(service.delete_model(&id, mode)?)
        })
        .await?;
    let body = to_json(&DeleteBody {
        message: format!(
            "Model {} {}",
            outcome.id,
            if outcome.trashed {
                "moved to the trash"
            } else {
                "deleted permanently"
            }
        ),
        model_id: outcome.id.clone(),
        freed_bytes: outcome.freed_bytes,
        trashed: outcome.trashed,
    })?;
    Ok(json_response(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::{Library, ListKind, ServiceOptions};

    fn state_over(dir: &std::path::Path) -> AppState {
        std::fs::create_dir_all(dir.join("models/m")).unwrap();
        std::fs::write(dir.join("models/m/w.bin"), b"1234").unwrap();
        let service = ModelLibraryService::new(Library::new(dir), ServiceOptions::default());
        AppState::new(service.unwrap())
    }

    fn rescan(state: &AppState) {
        let mut service = state.service.try_lock().unwrap();
        service.list(ListKind::Full, true).unwrap();
    }

    #[test]
    fn the_snapshot_is_served_only_while_a_read_holds_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_over(dir.path());
        let plain = ListQuery::default();
        state.read_in_progress.store(true, Ordering::SeqCst);
        assert!(
            state.fallback(&plain, false).is_none(),
            "nothing published yet"
        );

        rescan(&state);
        assert!(state.fallback(&plain, false).is_some());
        assert!(
            state.fallback(&plain, true).is_none(),
            "force_refresh waits"
        );
        let quick = ListQuery {
            quick: true,
            ..ListQuery::default()
        };
        assert!(state.fallback(&quick, false).is_none(), "quick waits");
        state.read_in_progress.store(false, Ordering::SeqCst);
        assert!(state.fallback(&plain, false).is_none(), "a non-read holder");
    }

    #[test]
    fn a_change_supersedes_the_snapshot_until_the_next_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_over(dir.path());
        let plain = ListQuery::default();
        rescan(&state);
        state.read_in_progress.store(true, Ordering::SeqCst);
        assert!(state.fallback(&plain, false).is_some());

        state.supersede_snapshot();
        assert!(state.fallback(&plain, false).is_none());
        rescan(&state);
        let fresh = state.fallback(&plain, false).expect("a newer snapshot");
        assert!(Arc::ptr_eq(&fresh, &state.snapshot.latest().unwrap()));
    }

    #[test]
    fn a_marker_clears_the_flag_even_on_panic() {
        let flag = AtomicBool::new(false);
        let result = std::panic::catch_unwind(|| {
            let _marker = ReadMarker::set(&flag);
            assert!(flag.load(Ordering::SeqCst));
            panic!("boom");
        });
        assert!(result.is_err());
        assert!(!flag.load(Ordering::SeqCst));
    }
}
