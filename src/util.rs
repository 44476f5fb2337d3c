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

/// Unix seconds as `YYYY-MM-DD HH:MM` in UTC (no time-zone database needed).
pub fn format_unix_utc(secs: f64) -> String {
    let secs = secs.floor() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
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
    let total = p.bytes_total.map_or("?".into(), human_bytes);
    let eta = p
        .eta_seconds
        .map_or(String::new(), |s| format!(" ETA {:.0} s", s.ceil()));
    format!(
        "{bar} {} / {total}  {}/s{eta}  file {}/{}",
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
    fn dates() {
        assert_eq!(format_unix_utc(0.0), "1970-01-01 00:00");
        assert_eq!(format_unix_utc(1_704_067_200.0), "2024-01-01 00:00");
        assert_eq!(format_unix_utc(951_825_600.0), "2000-02-29 12:00");
    }
}
