//! Small formatting helpers shared by the CLI and the window. Pure functions.

/// Bytes as a short human size with binary units: `0 B`, `1.5 KiB`, `668.8 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Seconds as a short time left: `45 s`, `3 min`, `2 h 5 min`.
pub fn short_duration(secs: f64) -> String {
    let s = secs.max(0.0).ceil() as u64;
    match s {
        0..=99 => format!("{s} s"),
        100..=5_999 => format!("{} min", s.div_ceil(60)),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// `n` and a noun, plural unless `n` is 1: `1 file`, `3 files`.
pub fn count_of(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A count with a short suffix: `135M`, `1.1B`, `7.0B`.
pub fn human_count(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.0}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0}K", n / 1e3)
    } else {
        format!("{n}")
    }
}

/// The time zone dates are shown in: the system's, read once by [`load_local_zone`]
/// (before a window opens, so the UI thread never reads the zone files); UTC until then.
static LOCAL_ZONE: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();

/// Reads the system's time zone (`TZ`, else `/etc/localtime`) for [`format_time`]; UTC if
/// it cannot be read. Call once at start, off the UI thread's frames.
pub fn load_local_zone() {
    let _ = LOCAL_ZONE.set(jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC));
}

/// Unix seconds as `YYYY-MM-DD HH:MM` in the user's time zone (see [`load_local_zone`]).
pub fn format_time(secs: f64) -> String {
    match LOCAL_ZONE.get() {
        Some(zone) => format_time_in(secs, zone),
        None => format_time_in(secs, &jiff::tz::TimeZone::UTC),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM` in `zone`.
pub fn format_time_in(secs: f64, zone: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_second(secs.floor() as i64) {
        Ok(t) => t
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => "-".into(),
    }
}

/// One line of download progress: bar, bytes, speed, ETA.
pub fn progress_line(p: &crate::library::DownloadProgress) -> String {
    let bar = match p.fraction() {
        Some(f) => {
            let filled = (f * 30.0).round() as usize;
            format!(
                "[{}{}] {:>3.0}%",
                "#".repeat(filled),
                ".".repeat(30 - filled),
                f * 100.0
            )
        }
        None => "[ size unknown ]".to_string(),
    };
    format!("{bar} {}", progress_summary(p))
}

/// Bytes so far of a total, short: `11.2/400.0 MiB` (the unit once when both share it),
/// `900.0 KiB/1.2 MiB`, or the bytes alone when the total is unknown.
pub fn bytes_of(done: u64, total: Option<u64>) -> String {
    let Some(total) = total else {
        return human_bytes(done);
    };
    let (d, t) = (human_bytes(done), human_bytes(total));
    match (d.rsplit_once(' '), t.rsplit_once(' ')) {
        (Some((dn, du)), Some((tn, tu))) if du == tu => format!("{dn}/{tn} {tu}"),
        _ => format!("{d}/{t}"),
    }
}

/// A download's bytes done of its total, speed, time left and file: `11.2 MiB / 400.0 MiB
/// 3.1 MiB/s ETA 127 s  file 1/1`.
pub fn progress_summary(p: &crate::library::DownloadProgress) -> String {
    let total = p.bytes_total.map_or("?".into(), human_bytes);
    let eta = p
        .eta_seconds
        .map_or(String::new(), |s| format!(" ETA {:.0} s", s.ceil()));
    format!(
        "{} / {total}  {}/s{eta}  file {}/{}",
        human_bytes(p.bytes_done),
        human_bytes(p.speed_bytes_per_sec as u64),
        (p.files_done + 1).min(p.files_total),
        p.files_total
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_of_a_total_say_the_unit_once() {
        assert_eq!(bytes_of(20_000, Some(50_000)), "19.5/48.8 KiB");
        assert_eq!(bytes_of(900 * 1024, Some(1_300_000)), "900.0 KiB/1.2 MiB");
        assert_eq!(bytes_of(5, None), "5 B");
    }

    #[test]
    fn time_left_is_short() {
        assert_eq!(short_duration(44.2), "45 s");
        assert_eq!(short_duration(127.0), "3 min");
        assert_eq!(short_duration(7_500.0), "2 h 5 min");
    }

    #[test]
    fn counts_say_one_file_and_two_files() {
        assert_eq!(count_of(1, "file"), "1 file");
        assert_eq!(count_of(0, "file"), "0 files");
        assert_eq!(count_of(2, "file"), "2 files");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(668_788_096), "637.8 MiB");
    }

    #[test]
    fn dates_in_a_zone() {
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(format_time_in(0.0, &utc), "1970-01-01 00:00");
        assert_eq!(format_time_in(1_704_067_200.0, &utc), "2024-01-01 00:00");
        assert_eq!(format_time_in(951_825_600.0, &utc), "2000-02-29 12:00");
        let east = jiff::tz::TimeZone::fixed(jiff::tz::offset(2));
        assert_eq!(format_time_in(1_704_067_200.0, &east), "2024-01-01 02:00");
        let west = jiff::tz::TimeZone::fixed(jiff::tz::offset(-5));
        assert_eq!(format_time_in(1_704_067_200.0, &west), "2023-12-31 19:00");
    }
}
