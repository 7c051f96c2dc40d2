//! frappe's per-site file locks (`frappe.utils.synchronization.filelock`).
//!
//! frappe holds `sites/<site>/locks/<name>.lock` with a 1 s timeout around
//! migrate (`bench_migrate`), new-site (`bench_new_site`), restore
//! (`site_restore`) and install-app (`install_app`), so a concurrent second
//! run fails fast with `LockTimeoutError` instead of racing. The fixture takes
//! the same files with an OS lock (`flock` via `File::try_lock`), which the
//! kernel drops when the holder exits or is killed, like filelock's.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::bench::Bench;
use crate::out::{Res, os_error, traceback};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct SiteLock {
    _file: File,
}

/// Takes `sites/<site>/locks/<name>.lock`, retrying for `timeout`.
pub fn acquire(bench: &Bench, site: &str, name: &str, timeout: Duration) -> Res<SiteLock> {
    let dir = bench.site_dir(site).join("locks");
    std::fs::create_dir_all(&dir).map_err(|e| os_error(&dir.display().to_string(), &e))?;
    let path: PathBuf = std::path::absolute(dir.join(format!("{name}.lock"))).unwrap_or_else(|_| dir.join(name));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| os_error(&path.display().to_string(), &e))?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(SiteLock { _file: file }),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(TryLockError::WouldBlock) => {
                return Err(traceback(
                    &[(
                        "/home/frappe/frappe-bench/apps/frappe/frappe/utils/synchronization.py",
                        55,
                        "filelock",
                        "raise LockTimeoutError(",
                    )],
                    &format!(
                        "frappe.exceptions.LockTimeoutError: Failed to aquire lock: {name}. Lock may be held by another process.<br>You can manually remove the lock if you think it's safe: {}",
                        path.display()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(os_error(&path.display().to_string(), &e)),
        }
    }
}
