//! Finding, reading and validating the manifest: shared by every command that needs one.

use std::path::{Path, PathBuf};

use benchform_manifest::{Code, Diagnostic, Severity, Validation};

/// The manifest's file name when `-f` is not given.
pub const DEFAULT_MANIFEST: &str = "benchform.yaml";

/// A manifest read from disk and validated (possibly with errors).
#[derive(Debug)]
pub struct Loaded {
    /// As the user named it (for messages).
    pub display: String,
    /// The folder relative paths in the manifest start from.
    pub dir: PathBuf,
    /// The manifest's bytes as read (fingerprints hash them).
    pub bytes: Vec<u8>,
    pub validation: Validation,
}

/// Read and validate the manifest named by `-f` (or the default), warning about missing paths.
/// `Err` carries the diagnostics when there is no file to validate.
pub fn load(file: Option<&Path>) -> Result<Loaded, Vec<Diagnostic>> {
    let path = file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_MANIFEST));
    let display = path.display().to_string();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let looked = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
            let hint = if file.is_some() {
                "check the path given with -f".to_string()
            } else {
                format!("run benchform in the folder that holds {DEFAULT_MANIFEST}, or name the manifest with -f FILE")
            };
            return Err(vec![Diagnostic::unplaced(
                &display,
                Severity::Error,
                Code::ManifestNotFound,
                format!("no manifest at {}", looked.display()),
                Some(hint),
            )]);
        }
        Err(e) => {
            return Err(vec![Diagnostic::unplaced(
                &display,
                Severity::Error,
                Code::ReadFailed,
                format!("cannot read {display}: {e}"),
                None,
            )]);
        }
    };
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let mut validation = benchform_manifest::validate(&display, &bytes);
    validation.check_paths(&dir, |p| p.exists());
    validation.check_compose_image(&dir, |p| std::fs::read_to_string(p).ok());
    Ok(Loaded { display, dir, bytes, validation })
}
