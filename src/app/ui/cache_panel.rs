//! The cache panel: valid/stale badge with the reason, cache age filling toward the TTL, the
//! TTL slider (logarithmic, 30 s – 3600 s), both levels' hits/misses/hit rate, last scan
//! duration, keys, stamps, and plots over the last five minutes (see `cache_plots`).

use std::collections::VecDeque;

use egui::{Color32, RichText};

pub use crate::app::ui::cache_plots::Sample;
use crate::app::ui::cache_plots::cache_plots_ui;
use crate::app::ui::{RefreshButton, refresh_buttons_ui};
use crate::library::CacheInfo;
use crate::library::{TTL_MAX_SECS, TTL_MIN_SECS};
use crate::util::format_time;

/// What the user asked for in the cache panel.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheAction {
    /// Apply this TTL (seconds).
    SetTtl(u64),
    /// Refresh (rebuild both levels).
    Refresh,
    /// Force a rescan of the current listing.
    ForceRefresh,
}

/// What the panel shows.
pub struct CachePanelInput<'a> {
    /// The latest cache state, if any arrived yet.
    pub info: Option<&'a CacheInfo>,
    /// Wall-clock now, unix seconds (the age is computed live from it).
    pub now: f64,
    /// Request history for the plots.
    pub history: &'a VecDeque<Sample>,
    /// When each listing was installed (unix seconds, oldest first), for the age plot.
    pub installed: &'a VecDeque<f64>,
    /// Whether a refresh is running (the refresh buttons wait for it).
    pub refreshing: bool,
}

/// The watch mode in a few words (the full description names the reason).
pub fn watch_summary(mode: &str) -> String {
    if let Some(rest) = mode
        .split_once("polling modification times of ")
        .map(|(_, r)| r)
    {
        let folders = rest.split_whitespace().next().unwrap_or("some");
        format!("file events + polling {folders} folders")
    } else if mode.starts_with("polling") {
        "polling".into()
    } else if mode.starts_with("watching file events") {
        "file events".into()
    } else if mode.starts_with("starting") {
        "starting".into()
    } else {
        "off".into()
    }
}

/// Badge text and colour for the service cache, computed live. "Valid" always says what it
/// rests on: how soon a change on disk shows, or that it may not show until the TTL.
pub fn badge(info: &CacheInfo, now: f64) -> (String, Color32) {
    let s = &info.service_cache;
    let age = s.cache_timestamp.map(|t| now - t);
    let expired = age.is_some_and(|a| a >= s.cache_ttl_seconds as f64);
    if s.cache_valid && !expired {
        let within = |b: f64| format!("changes within {b:.0} s");
        let (how, sure) = match (s.watch_mode.as_str(), s.freshness_bound_seconds) {
            (m, Some(b)) if m.starts_with("polling") => (format!("polling, {}", within(b)), true),
            (m, Some(b)) if m.contains("polling") => {
                (format!("file events + polling, {}", within(b)), true)
            }
            (_, Some(b)) => (format!("file events, {}", within(b)), true),
            (m, None) if m.starts_with("starting") => (
                "watches starting, a change may be unseen".to_string(),
                false,
            ),
            (_, None) => (
                "not watching, changes unseen until the TTL".to_string(),
                false,
            ),
        };
        let color = if sure {
            Color32::from_rgb(60, 170, 90)
        } else {
            Color32::from_rgb(150, 170, 60)
        };
        (format!("Valid · {how}"), color)
    } else {
        let reason = if s.cache_valid && expired {
            "TTL expired".to_string()
        } else {
            s.stale_reason.clone().unwrap_or_else(|| "unknown".into())
        };
        (format!("Stale: {reason}"), Color32::from_rgb(220, 160, 40))
    }
}

fn rate(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
}

fn stamp(t: Option<f64>) -> String {
    t.map_or("absent".into(), format_time)
}

/// Draws the panel. `ttl_slider` holds the slider's position between frames.
pub fn cache_panel_ui(
    ui: &mut egui::Ui,
    input: &CachePanelInput<'_>,
    ttl_slider: &mut f64,
) -> Option<CacheAction> {
    let mut action = None;
    ui.heading("Cache");
    let Some(info) = input.info else {
        ui.label("Waiting for the first listing…");
        return None;
    };
    let s = &info.service_cache;
    let a = &info.api_cache;

    let (text, color) = badge(info, input.now);
    ui.add(egui::Label::new(RichText::new(text).color(color).strong()).wrap());
    ui.add(egui::Label::new(RichText::new(&s.freshness).small()).wrap());

    let ttl = s.cache_ttl_seconds as f64;
    let age = s.cache_timestamp.map(|t| (input.now - t).max(0.0));
    let fraction = age.map_or(0.0, |a| (a / ttl).clamp(0.0, 1.0)) as f32;
    ui.add(
        egui::ProgressBar::new(fraction)
            .desired_width(ui.available_width())
            .text(match age {
                Some(a) => format!("age {a:.0} s of {ttl:.0} s TTL"),
                None => "no cached listing".into(),
            }),
    );

    let slider = ui
        .add(
            egui::Slider::new(ttl_slider, TTL_MIN_SECS as f64..=TTL_MAX_SECS as f64)
                .logarithmic(true)
                .integer()
                .suffix(" s")
                .text("TTL")
                // A typed value outside the range is sent as typed: the service refuses
                // it with an error naming the range, rather than it being changed silently.
                .clamping(egui::SliderClamping::Never),
        )
        .on_hover_text(format!(
            "How long a listing is kept: {TTL_MIN_SECS} to {TTL_MAX_SECS} s"
        ));
    if slider.drag_stopped() || (slider.changed() && !slider.dragged()) {
        let secs = ttl_slider.round() as u64;
        if secs != s.cache_ttl_seconds {
            action = Some(CacheAction::SetTtl(secs));
        }
    }

    ui.horizontal(|ui| match refresh_buttons_ui(ui, input.refreshing) {
        Some(RefreshButton::Refresh) => action = Some(CacheAction::Refresh),
        Some(RefreshButton::Force) => action = Some(CacheAction::ForceRefresh),
        None => {}
    });

    ui.separator();
    egui::Grid::new("cache_stats")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            let row = |ui: &mut egui::Ui, k: &str, v: String| {
                ui.label(k);
                ui.label(v);
                ui.end_row();
            };
            // The mode's whole description (with its reason) can be long: the row says it
            // briefly, the full text is on hover and in the sentence under the badge.
            ui.label("Watching");
            ui.label(watch_summary(&s.watch_mode))
                .on_hover_text(&s.watch_mode);
            ui.end_row();
            row(
                ui,
                "Service hits / misses",
                format!("{} / {}", s.hits, s.misses),
            );
            row(ui, "Service hit rate", rate(s.hit_rate));
            row(
                ui,
                "View hits / misses",
                format!("{} / {}", a.hits, a.misses),
            );
            row(ui, "View hit rate", rate(a.hit_rate));
            row(
                ui,
                "Last scan",
                s.last_scan_duration_ms
                    .map_or("-".into(), |ms| format!("{ms:.1} ms")),
            );
            row(ui, "Cached models", s.cached_model_count.to_string());
            row(ui, "Cache keys", s.cache_keys.join(", "));
            row(ui, "View entries", a.api_cache_entries.to_string());
            row(
                ui,
                "Changes show within",
                s.freshness_bound_seconds
                    .map_or("unknown (TTL)".into(), |b| format!("{b:.0} s")),
            );
            row(ui, "Listing confirmed", stamp(s.last_verified));
            row(
                ui,
                "Writes",
                s.read_only_reason
                    .as_ref()
                    .map_or("on".into(), |_| "off (a library folder is a link)".into()),
            );
            row(ui, "Registry changed", stamp(s.registry_mtime));
            row(ui, "Models folder changed", stamp(s.models_dir_mtime));
            if let Some(shared) = &info.shared_cache {
                row(
                    ui,
                    "Shared cache",
                    format!("{} · {}", shared.state, shared.url),
                );
                row(
                    ui,
                    "Shared hits / misses",
                    format!("{} / {}", shared.shared_hits, shared.shared_misses),
                );
                row(
                    ui,
                    "Published / told / heard",
                    format!(
                        "{} / {} / {}",
                        shared.listings_published,
                        shared.invalidations_sent,
                        shared.invalidations_received
                    ),
                );
                row(ui, "Listing vouched for", vouched_text(shared));
            }
        });
    // Entries the registry has but the listing could not show (SPEC §1: said by name).
    if !s.registry_problems.is_empty() {
        egui::CollapsingHeader::new(
            RichText::new(format!("Registry problems ({})", s.registry_problems.len()))
                .color(Color32::from_rgb(220, 160, 40)),
        )
        .default_open(true)
        .show(ui, |ui| {
            for problem in &s.registry_problems {
                ui.add(egui::Label::new(problem).wrap());
            }
        });
    }
    if !a.api_cache_keys.is_empty() {
        ui.collapsing("View cache keys", |ui| {
            for key in &a.api_cache_keys {
                ui.monospace(key);
            }
        });
    }

    ui.separator();
    cache_plots_ui(
        ui,
        input.history,
        input.installed,
        input.now,
        s.cache_ttl_seconds as f64,
    );
    action
}

/// Who vouches for the listing shown: a watch session, or nobody (then a watching window
/// makes its own scan after its watches are set up).
fn vouched_text(shared: &crate::library::shared::SharedCacheInfo) -> String {
    let who = match (shared.vouched, shared.watching) {
        (true, true) => "yes (file events here and in Redis)",
        (true, false) => "yes (another instance's file events)",
        (false, _) => "no",
    };
    format!("{who} · scans spared {}", shared.scans_spared)
}

#[cfg(test)]
mod tests {
    use super::watch_summary;
    use crate::library::watch::WatchMode;

    #[test]
    fn watch_modes_are_said_in_a_few_words() {
        let said = |m: WatchMode| watch_summary(&m.to_string());
        assert_eq!(said(WatchMode::Events), "file events");
        assert_eq!(said(WatchMode::Starting), "starting");
        assert_eq!(said(WatchMode::Off), "off");
        let reason = "the system's limit on watched folders is reached".to_string();
        assert_eq!(
            said(WatchMode::Polling {
                reason: reason.clone()
            }),
            "polling"
        );
        assert_eq!(
            said(WatchMode::Hybrid {
                polled: 5859,
                reason
            }),
            "file events + polling 5859 folders"
        );
    }
}
