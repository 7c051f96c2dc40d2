//! Small self-contained helpers: SHA-1, base64, clock formatting, sizes and
//! atomic writes.
//!
//! The fixture is linked statically into a FROM-scratch image and may only
//! depend on `serde_json`, so the few primitives Python's standard library
//! gives frappe for free are written out here.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// SHA-1 (FIPS 180-4). frappe v15 names a new site's database
/// `"_" + sha1(realpath(site_path)).hexdigest()[:16]`; using the same hash
/// keeps fixture database names in the same shape and just as deterministic.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (slot, word) in w.iter_mut().zip(block.chunks_exact(4)) {
            *slot = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, v) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding, for HTTP Basic auth.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Alphanumeric random string, like `frappe.generate_hash`/`random_string`
/// for the per-site database password. Reads the kernel's entropy; if that is
/// unavailable (it never is on Linux) falls back to hashing the clock, which
/// is fine for a test fixture's throwaway password.
pub fn random_string(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = vec![0u8; len];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_ok();
    if !ok {
        let seed = format!("{:?}{}", SystemTime::now(), std::process::id());
        let digest = sha1(seed.as_bytes());
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = digest[i % digest.len()].wrapping_add(i as u8);
        }
    }
    bytes.iter().map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])).collect()
}

/// Broken-down UTC time. The fixture has no time-zone database; frappe_docker
/// containers run in UTC unless told otherwise, so UTC is the honest choice.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

impl Clock {
    pub fn now() -> Clock {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock::from_unix(d.as_secs() as i64, d.subsec_micros())
    }

    pub fn from_unix(secs: i64, micros: u32) -> Clock {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Clock { year, month, day, hour: rem / 3600, minute: rem % 3600 / 60, second: rem % 60, micros }
    }

    /// `%Y%m%d_%H%M%S`, frappe's backup file prefix.
    pub fn backup_stamp(&self) -> String {
        format!("{:04}{:02}{:02}_{:02}{:02}{:02}", self.year, self.month, self.day, self.hour, self.minute, self.second)
    }

    /// `%Y-%m-%d %H:%M:%S.%f`, frappe's `now()`.
    pub fn frappe_now(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.micros
        )
    }

    /// `%(asctime)s` of Python's logging module: `2024-01-31 12:00:00,123`.
    pub fn log_time(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.micros / 1000
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// frappe's `get_file_size(path, format=True)`: `f"{num:3.1f}{unit}B"` with
/// binary units.
pub fn format_size(bytes: u64) -> String {
    let mut num = bytes as f64;
    for unit in ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi"] {
        if num.abs() < 1024.0 {
            return format!("{num:3.1}{unit}B");
        }
        num /= 1024.0;
    }
    format!("{num:.1}YiB")
}

/// Python's `str(round(x, 3))` for the `Success: Done in …s` patch timing:
/// at most three decimals, trailing zeros dropped but at least one kept.
pub fn py_round3(x: f64) -> String {
    let s = format!("{x:.3}");
    let trimmed = s.trim_end_matches('0');
    if trimmed.ends_with('.') { format!("{trimmed}0") } else { trimmed.to_owned() }
}

/// Writes through a temporary file and a rename, so a concurrent reader (or a
/// killed process) never sees half a JSON document.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Version ordering close enough to Python's `packaging.version.Version` for
/// frappe's downgrade check: numeric release segments, then dev < pre-release
/// < final < post. `None` when the text is not a version at all (frappe then
/// assumes "not a downgrade").
pub fn parse_version(text: &str) -> Option<(Vec<u64>, u8, u64)> {
    let t = text.trim().trim_start_matches(['v', 'V']);
    let release_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let release: Vec<u64> =
        t[..release_end].trim_end_matches('.').split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if release.is_empty() {
        return None;
    }
    let rest = t[release_end..].trim_start_matches(['-', '.', '_', '+']).to_ascii_lowercase();
    let digits: u64 = rest.chars().filter(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0);
    let phase = if rest.is_empty() {
        3
    } else if rest.starts_with("dev") {
        0
    } else if rest.starts_with("post") {
        4
    } else if ["a", "b", "c", "rc", "alpha", "beta", "pre", "preview"].iter().any(|p| rest.starts_with(p)) {
        let kind = if rest.starts_with('a') {
            0
        } else if rest.starts_with('b') {
            1
        } else {
            2
        };
        return Some((trim_zeros(release), 1, kind * 1_000_000 + digits));
    } else {
        // Local or unknown suffix: order it with the final release.
        3
    };
    Some((trim_zeros(release), phase, digits))
}

fn trim_zeros(mut v: Vec<u64>) -> Vec<u64> {
    while v.len() > 1 && v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// `true` when `a` is a strictly newer version than `b`; `false` when either
/// does not parse.
pub fn version_newer(a: &str, b: &str) -> bool {
    match (parse_version(a), parse_version(b)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_vectors() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(hex(&sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let long = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(&sha1(long.as_bytes())), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    }

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"tok:"), "dG9rOg==");
    }

    #[test]
    fn clock_formats() {
        let c = Clock::from_unix(1_700_000_000, 123_456);
        assert_eq!(c.backup_stamp(), "20231114_221320");
        assert_eq!(c.frappe_now(), "2023-11-14 22:13:20.123456");
        assert_eq!(c.log_time(), "2023-11-14 22:13:20,123");
        assert_eq!(Clock::from_unix(951_782_400, 0).backup_stamp(), "20000229_000000");
    }

    #[test]
    fn sizes_and_rounding_like_python() {
        assert_eq!(format_size(94), "94.0B");
        assert_eq!(format_size(5), "5.0B");
        assert_eq!(format_size(1260), "1.2KiB");
        assert_eq!(format_size(3 * 1024 * 1024), "3.0MiB");
        assert_eq!(py_round3(0.0), "0.0");
        assert_eq!(py_round3(0.0012), "0.001");
        assert_eq!(py_round3(0.094), "0.094");
        assert_eq!(py_round3(1.5), "1.5");
    }

    #[test]
    fn version_ordering() {
        assert!(version_newer("15.10.0", "15.9.3"));
        assert!(version_newer("v16.0.0", "15.88.1"));
        assert!(!version_newer("15.0.0", "15.0"));
        assert!(version_newer("15.0.0", "15.0.0-dev"));
        assert!(version_newer("15.0.0", "15.0.0-beta.2"));
        assert!(version_newer("15.0.0-rc.1", "15.0.0-beta.2"));
        assert!(!version_newer("UNVERSIONED", "15.0.0"));
        assert!(!version_newer("0.0.1-dev", "0.0.1-dev"));
    }
}
