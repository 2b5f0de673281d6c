//! Helpers shared by the volume and MRI tests.

use std::path::Path;
use std::process::Command;

pub fn python_has(module: &str) -> bool {
    Command::new("python3")
        .arg("-c")
        .arg(format!("import {module}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs scripts/check_nifti.py, or says why it is skipped. Returns false when skipped.
pub fn check_with_nibabel(out: &Path, reference: &Path, extra: &[&str]) -> bool {
    if !python_has("nibabel") {
        eprintln!(
            "skip: `python3 -c \"import nibabel\"` fails, so {} is not checked in nibabel",
            out.display()
        );
        return false;
    }
    let o = Command::new("python3")
        .arg("scripts/check_nifti.py")
        .arg(out)
        .arg(reference)
        .args(extra)
        .output()
        .expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "check_nifti.py {} {}: {text}", out.display(), reference.display());
    eprintln!("{text}");
    true
}
