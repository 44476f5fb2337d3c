//! The cache panel's plots over a rolling window ending now (the last five minutes): the
//! requests per ten seconds, hits and misses stacked; request latency on a log scale; and
//! the cache's age growing live, with each new listing and each TTL expiry marked on the
//! time axis. The series are made by plain functions (tested); drawing takes what they make.

use std::collections::VecDeque;

use egui::{Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints, Points, VLine};

/// One listing request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was answered, unix seconds.
    pub at: f64,
    /// Time the service took, milliseconds.
    pub latency_ms: f64,
    /// Whether the view cache answered.
    pub cache_hit: bool,
}

/// The window the plots show, seconds before now.
pub const WINDOW_SECS: f64 = 300.0;

/// Width of one interval of the request counts, seconds.
pub const BUCKET_SECS: f64 = 10.0;

const HIT: Color32 = Color32::from_rgb(60, 170, 90);
const MISS: Color32 = Color32::from_rgb(220, 70, 60);

/// Requests per interval over the window: (the interval's middle in seconds relative to
/// now, so negative; hits; misses), oldest first, every interval present.
pub fn request_buckets(history: &VecDeque<Sample>, now: f64) -> Vec<(f64, u32, u32)> {
    let n = (WINDOW_SECS / BUCKET_SECS) as usize;
    let mut counts = vec![(0u32, 0u32); n];
    for s in history {
        let ago = now - s.at;
        if !(0.0..WINDOW_SECS).contains(&ago) {
            continue;
        }
        let i = (ago / BUCKET_SECS) as usize;
        if s.cache_hit {
            counts[i].0 += 1;
        } else {
            counts[i].1 += 1;
        }
    }
    (0..n)
        .rev()
        .map(|i| (-(i as f64 + 0.5) * BUCKET_SECS, counts[i].0, counts[i].1))
        .collect()
}

/// The cache's age over the window.
#[derive(Debug, Default, PartialEq)]
pub struct AgeSeries {
    /// One rising segment per listing: ((x, age), (x, age)), x relative to now.
    pub segments: Vec<[[f64; 2]; 2]>,
    /// When a new listing was installed (a rescan or an invalidation), relative to now.
    pub listings: Vec<f64>,
    /// When a listing reached the TTL before the next one came, relative to now.
    pub expiries: Vec<f64>,
}

/// The age series for the listings installed at `installed` (unix seconds, oldest first),
/// at `now`, with a TTL of `ttl` seconds.
pub fn age_series(installed: &VecDeque<f64>, now: f64, ttl: f64) -> AgeSeries {
    let start = now - WINDOW_SECS;
    let mut series = AgeSeries::default();
    for (i, &from) in installed.iter().enumerate() {
        let until = installed.get(i + 1).copied().unwrap_or(now).min(now);
        if until < start || from > now {
            continue;
        }
        let a = from.max(start);
        series
            .segments
            .push([[a - now, a - from], [until - now, until - from]]);
        if from >= start {
            series.listings.push(from - now);
        }
        let expiry = from + ttl;
        if (start..until).contains(&expiry) {
            series.expiries.push(expiry - now);
        }
    }
    series
}

/// `10^v` as the latency axis labels it: 0.1, 1, 10, 100 (ms); nothing between decades.
fn decade_label(v: f64) -> String {
    if (v - v.round()).abs() > 1e-6 {
        return String::new();
    }
    let ms = 10f64.powf(v.round());
    if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms}")
    }
}

/// Seconds before now as the time axis labels them.
fn seconds_label(v: f64) -> String {
    if v.abs() < 0.5 {
        "now".into()
    } else {
        format!("{:.0} s", v)
    }
}

fn window_plot(id: &str, height: f32) -> Plot<'static> {
    Plot::new(id)
        .height(height)
        .include_x(-WINDOW_SECS)
        .include_x(0.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .x_axis_formatter(|mark, _| seconds_label(mark.value))
        .legend(Legend::default().position(egui_plot::Corner::LeftTop))
}

/// Draws the three plots.
pub fn cache_plots_ui(
    ui: &mut egui::Ui,
    history: &VecDeque<Sample>,
    installed: &VecDeque<f64>,
    now: f64,
    ttl: f64,
) {
    ui.label(RichText::new("Requests per 10 s (last 5 min)").strong());
    let buckets = request_buckets(history, now);
    let bars = |pick: fn(&(f64, u32, u32)) -> u32| -> Vec<Bar> {
        buckets
            .iter()
            .map(|b| Bar::new(b.0, pick(b) as f64).width(BUCKET_SECS * 0.8))
            .collect()
    };
    let hits = BarChart::new("hits", bars(|b| b.1)).color(HIT);
    let misses = BarChart::new("misses", bars(|b| b.2))
        .color(MISS)
        .stack_on(&[&hits]);
    window_plot("requests_plot", 90.0)
        .include_y(0.0)
        .include_y(1.0)
        .show(ui, |plot| {
            plot.bar_chart(hits);
            plot.bar_chart(misses);
        });

    ui.label(RichText::new("Request latency (ms, log scale)").strong());
    let points = |hit: bool| -> PlotPoints {
        history
            .iter()
            .filter(|s| s.cache_hit == hit && now - s.at < WINDOW_SECS)
            .map(|s| [s.at - now, s.latency_ms.max(0.01).log10()])
            .collect()
    };
    window_plot("latency_plot", 90.0)
        .include_y(-1.0)
        .include_y(2.0)
        .y_axis_formatter(|mark, _| decade_label(mark.value))
        .show(ui, |plot| {
            plot.points(Points::new("hits", points(true)).radius(3.0).color(HIT));
            plot.points(Points::new("misses", points(false)).radius(3.0).color(MISS));
        });

    ui.label(RichText::new("Cache age (s): new listings, TTL expiries").strong());
    let age = age_series(installed, now, ttl);
    window_plot("age_plot", 90.0)
        .include_y(0.0)
        .include_y(ttl.min(WINDOW_SECS))
        .show(ui, |plot| {
            for seg in &age.segments {
                plot.line(
                    Line::new("age", PlotPoints::from(seg.to_vec()))
                        .color(Color32::from_rgb(70, 140, 230)),
                );
            }
            for &x in &age.listings {
                plot.vline(VLine::new("new listing", x).color(HIT).width(1.0));
            }
            for &x in &age.expiries {
                plot.vline(VLine::new("TTL expired", x).color(MISS).width(1.0));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_per_interval_ending_now() {
        let now = 1_000_000.0;
        let at = |ago: f64, hit: bool| Sample {
            at: now - ago,
            latency_ms: 1.0,
            cache_hit: hit,
        };
        let history: VecDeque<Sample> = [
            at(1.0, true),
            at(2.0, false),
            at(15.0, true),
            at(299.0, false),
            at(301.0, true), // outside the window
        ]
        .into();
        let b = request_buckets(&history, now);
        assert_eq!(b.len(), 30);
        assert_eq!(b.last(), Some(&(-5.0, 1, 1)));
        assert_eq!(b[28], (-15.0, 1, 0));
        assert_eq!(b[0], (-295.0, 0, 1));
    }

    #[test]
    fn the_age_rises_per_listing_and_marks_listings_and_expiries() {
        let now = 1_000_000.0;
        // Listings 400 s ago (expired 100 s later, at 340 s ago... outside), 200 s ago (its
        // 30 s TTL ran out 170 s ago) and 50 s ago.
        let installed: VecDeque<f64> = [now - 400.0, now - 200.0, now - 50.0].into();
        let s = age_series(&installed, now, 30.0);
        assert_eq!(s.listings, [-200.0, -50.0]);
        assert_eq!(s.expiries, [-170.0, -20.0]);
        assert_eq!(s.segments.len(), 3);
        assert_eq!(s.segments[0], [[-300.0, 100.0], [-200.0, 200.0]]);
        assert_eq!(s.segments[2], [[-50.0, 0.0], [0.0, 50.0]]);
    }

    #[test]
    fn the_latency_axis_names_decades() {
        assert_eq!(decade_label(0.0), "1");
        assert_eq!(decade_label(2.0), "100");
        assert_eq!(decade_label(-1.0), "0.1");
        assert_eq!(decade_label(0.5), "");
    }
}
