//! `loss.csv`: the loss and learning rate of every step, kept with each run so a resumed run's
//! log continues the interrupted one's exactly.

use crate::Result;
use std::path::Path;

/// Writes `step,loss,lr` rows, atomically.
pub fn write_loss_log(path: &Path, rows: &[(u64, f32, f32)]) -> Result<()> {
    let mut s = String::from("step,loss,lr\n");
    for (step, loss, lr) in rows {
        s.push_str(&format!("{step},{loss},{lr}\n"));
    }
    crate::io::write_bytes_atomic(path, s.as_bytes())
}

/// The rows of an existing log up to and including step `up_to` (none if there is no log).
pub fn read_loss_log(path: &Path, up_to: u64) -> Vec<(u64, f32, f32)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return vec![];
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split(',');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .filter(|r: &(u64, f32, f32)| r.0 <= up_to)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let dir = std::env::temp_dir().join(format!("ffvol-losslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("loss.csv");
        let rows = vec![(1, 0.5, 1e-3), (2, 0.25, 9e-4), (3, 0.125, 8e-4)];
        write_loss_log(&path, &rows).unwrap();
        assert_eq!(read_loss_log(&path, 3), rows);
        assert_eq!(read_loss_log(&path, 2), rows[..2].to_vec());
        assert!(read_loss_log(&dir.join("missing.csv"), 9).is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }
}
