//! One entry point per parser that takes the bytes of a file, for the fuzz targets in `fuzz/`
//! (`cargo +nightly fuzz run NAME`) and the malformed-input tests. Each runs the same code the
//! commands run on a file of that kind and returns whether it was accepted; an error is the
//! expected outcome for garbage, a panic, a hang or a huge allocation is a bug.
//!
//! Readers that take a path (NIfTI, .mat, DICOM, HDF5, run folders) get the bytes through a
//! file in a per-process scratch folder, so the whole reader is exercised, file checks included.

use crate::Result;
use std::path::PathBuf;

/// A scratch file `name` in this process's fuzz folder holding `bytes`.
fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ffvol-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(name);
    // a failure to write shows up as the reader's error, which is fine for fuzzing
    let _ = std::fs::write(&path, bytes);
    path
}

/// A mesh file's bytes, by format (`ply`, `obj`, `stl`), parsed and checked as `read_mesh` does.
pub fn mesh(format: crate::io::MeshFormat, bytes: &[u8]) -> std::result::Result<usize, String> {
    use crate::io::MeshFormat;
    let mesh = match format {
        MeshFormat::Ply => crate::io::ply::parse(bytes),
        MeshFormat::Obj => crate::io::obj::parse(bytes),
        MeshFormat::Stl => crate::io::stl::parse(bytes),
        MeshFormat::Glb => return Err("glb is not read".into()),
    }?;
    mesh.validate()?;
    Ok(mesh.triangles.len())
}

/// A volume file's bytes read through the one volume loader (`ext`: `nii`, `nii.gz`, `npy`,
/// `mat`, `dcm`).
pub fn volume(ext: &str, bytes: &[u8]) -> Result<[usize; 3]> {
    let path = scratch_file(&format!("input.{ext}"), bytes);
    crate::io::volume::read_volume(&path).map(|v| v.dims)
}

/// A `.npy` file's bytes.
pub fn npy(bytes: &[u8]) -> std::result::Result<Vec<usize>, String> {
    crate::io::npy::parse_npy(bytes).map(|a| a.shape)
}

/// An HDF5 Data Exchange file's bytes, read as `--projections scan.h5` is.
pub fn hdf5(bytes: &[u8]) -> Result<usize> {
    let path = scratch_file("input.h5", bytes);
    crate::io::raw_projections::read_data_exchange(&path, None).map(|s| s.file_rows)
}

/// A CT geometry TOML's text, parsed and resolved (angle files relative to the scratch folder).
pub fn geometry(bytes: &[u8]) -> Result<usize> {
    let path = scratch_file("geometry.toml", bytes);
    crate::operator::ct_geometry::Scan::load(&path).map(|s| s.n_rays())
}

/// A run folder's `run.toml`, read as `fit --resume` and `export` read it, and validated.
pub fn run_toml(bytes: &[u8]) -> Result<()> {
    let path = scratch_file("run.toml", bytes);
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    crate::config::RunConfig::load_run(&dir).map(|_| ())
}

/// A checkpoint's bytes (safetensors), read and checked against a small network's layout.
pub fn checkpoint(bytes: &[u8]) -> std::result::Result<usize, String> {
    let ck = crate::model::checkpoint::Checkpoint::from_bytes(bytes)?;
    let expected = crate::model::checkpoint::layout(&ck.encoding, &ck.state.mlp.sizes);
    ck.check_layout(&expected, "its own metadata")?;
    Ok(ck.state.mlp.params.len())
}

/// A `--sampling` spec, parsed, and its mask built on a small grid.
pub fn sampling(bytes: &[u8]) -> std::result::Result<usize, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let s = crate::sample::kspace::Sampling::parse(text)?;
    Ok(s.build([8, 12, 12], 0).iter().filter(|&&m| m).count())
}
