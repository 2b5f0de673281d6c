//! Reading meshes and volumes, writing meshes, volumes and images (one file per format).

// Placeholder until the I/O stage lands (replaced by the io branch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MeshFormat {
    Ply,
    Obj,
    Stl,
    Glb,
}

/// Placeholder until the I/O stage lands (replaced by the io branch).
pub fn write_bytes_atomic(path: &std::path::Path, data: &[u8]) -> crate::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(|e| crate::Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| crate::Error::io(path, e))
}
