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

/// The rows of an existing log up to and including step `up_to` (none if there is no log); a
/// row that does not parse is an error naming the file and the line.
pub fn read_loss_log(path: &Path, up_to: u64) -> Result<Vec<(u64, f32, f32)>> {
    if !path.exists() {
        return Ok(vec![]);
    }
    let bytes = crate::io::read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|_| crate::Error::format(path, "not UTF-8 text"))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let mut it = line.split(',');
        let row = (|| -> Option<(u64, f32, f32)> {
            let r = (it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
            it.next().is_none().then_some(r)
        })();
        match row {
            Some(r) if r.0 <= up_to => rows.push(r),
            Some(_) => {}
            // a torn last line cannot occur (the log is written atomically), so any bad row is damage
            None => {
                return Err(crate::Error::format(
                    path,
                    format!("line {}: {line:?} is not a step,loss,lr row", i + 1),
                ))
            }
        }
    }
    Ok(rows)
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
        assert_eq!(read_loss_log(&path, 3).unwrap(), rows);
        assert_eq!(read_loss_log(&path, 2).unwrap(), rows[..2].to_vec());
        assert!(read_loss_log(&dir.join("missing.csv"), 9).unwrap().is_empty());
        std::fs::write(&path, "step,loss,lr\n1,0.5,0.001\n2,x,0.001\n").unwrap();
        let err = read_loss_log(&path, 9).unwrap_err().to_string();
        assert!(err.contains("loss.csv") && err.contains("line 3"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
