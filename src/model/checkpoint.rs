//! Checkpoints as safetensors, so Python users can read the weights:
//!
//! ```python
//! from safetensors.numpy import load_file
//! w = load_file("runs/bunny/checkpoint.safetensors")   # mlp.0.weight, mlp.0.bias, …
//! ```
//!
//! Tensors: `mlp.{l}.weight` (out×in), `mlp.{l}.bias` (out), `encoding.frequencies` (m×d,
//! cycles per unit box; absent for `none`, and for a hash grid without Fourier features),
//! `encoding.hashgrid.table` (the hash grid's tables, flat: level by level, entry by entry, F
//! features each; only for `hashgrid`), `adam.m`, `adam.v` (flat, in the parameter order: the
//! layers, then the tables). Metadata (strings): `format`, `step`, `sizes`, `encoding_dim`,
//! `encoding_scale`, `encoding_hashgrid` (the grid's settings as JSON, for `hashgrid`), plus
//! whatever the job adds (the unit-box transform, the sampling box).

use super::Mlp;
use crate::backend::TrainState;
use crate::encoding::Encoding;
use crate::train::AdamState;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

const FORMAT: &str = "ffvol-checkpoint-1";

pub struct Checkpoint {
    pub encoding: Encoding,
    pub state: TrainState,
    /// Job-specific strings (JSON values), e.g. `unit_from_mesh`.
    pub extra: HashMap<String, String>,
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Checkpoint {
    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> crate::Result<Vec<u8>> {
        let mlp = &self.state.mlp;
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (l, layer) in mlp.layers().iter().enumerate() {
            owned.push((
                format!("mlp.{l}.weight"),
                vec![layer.n_out, layer.n_in],
                bytes(&mlp.params[layer.weight..layer.bias]),
            ));
            owned.push((
                format!("mlp.{l}.bias"),
                vec![layer.n_out],
                bytes(&mlp.params[layer.bias..layer.bias + layer.n_out]),
            ));
        }
        let m = self.encoding.frequencies();
        if !self.encoding.identity && (m > 0 || self.encoding.hash.is_none()) {
            owned.push(("encoding.frequencies".into(), vec![m, self.encoding.dim], bytes(&self.encoding.b)));
        }
        let layers = mlp.layer_params();
        if self.encoding.hash.is_some() {
            let table = &mlp.params[layers.min(mlp.params.len())..];
            owned.push(("encoding.hashgrid.table".into(), vec![table.len()], bytes(table)));
        }
        owned.push(("adam.m".into(), vec![self.state.adam.m.len()], bytes(&self.state.adam.m)));
        owned.push(("adam.v".into(), vec![self.state.adam.v.len()], bytes(&self.state.adam.v)));
        let mut meta = self.extra.clone();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("step".into(), self.state.adam.step.to_string());
        meta.insert("sizes".into(), serde_json::to_string(&mlp.sizes).expect("a list of integers is JSON"));
        meta.insert("encoding_dim".into(), self.encoding.dim.to_string());
        meta.insert("encoding_scale".into(), self.encoding.scale.to_string());
        meta.insert("encoding_identity".into(), self.encoding.identity.to_string());
        if let Some(h) = &self.encoding.hash {
            let spec = serde_json::to_string(&h.spec)
                .map_err(|e| crate::Error::Input(format!("checkpoint: the hash grid's settings: {e}")))?;
            meta.insert("encoding_hashgrid".into(), spec);
        }
        let views = owned
            .iter()
            .map(|(name, shape, data)| {
                TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| crate::Error::Input(format!("checkpoint: {e}")))?;
        safetensors::tensor::serialize(views, Some(meta))
            .map_err(|e| crate::Error::Input(format!("checkpoint: {e}")))
    }

    pub fn save(&self, path: &Path) -> crate::Result<()> {
        crate::io::write_bytes_atomic(path, &self.to_bytes()?)
    }

    pub fn load(path: &Path) -> crate::Result<Self> {
        let data = crate::io::read_file(path)?;
        Self::from_bytes(&data).map_err(|m| crate::Error::format(path, m))
    }

    pub fn from_bytes(data: &[u8]) -> Result<Self, String> {
        let (_, metadata) =
            SafeTensors::read_metadata(data).map_err(|e| format!("not a safetensors file: {e}"))?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(format!("not an ffvol checkpoint (format {:?})", meta.get("format")));
        }
        let st = SafeTensors::deserialize(data).map_err(|e| format!("not a safetensors file: {e}"))?;
        let get = |k: &str| meta.get(k).ok_or_else(|| format!("metadata has no {k}"));
        let parse_err = |k: &str| format!("metadata {k} is malformed");
        let sizes: Vec<usize> = serde_json::from_str(get("sizes")?).map_err(|_| parse_err("sizes"))?;
        let step: u64 = get("step")?.parse().map_err(|_| parse_err("step"))?;
        let dim: usize = get("encoding_dim")?.parse().map_err(|_| parse_err("encoding_dim"))?;
        let scale: f32 = get("encoding_scale")?.parse().map_err(|_| parse_err("encoding_scale"))?;
        let identity: bool = get("encoding_identity")?.parse().map_err(|_| parse_err("encoding_identity"))?;
        if sizes.len() < 2 || dim == 0 {
            return Err("metadata sizes/encoding_dim are malformed".into());
        }
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
            let t = st.tensor(name).map_err(|_| format!("tensor {name} is missing"))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(format!(
                    "tensor {name} has shape {:?} {:?}, expected F32 {shape:?}",
                    t.shape(),
                    t.dtype()
                ));
            }
            Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        };
        let mut params = vec![0.0; Mlp::n_params(&sizes)];
        for (l, layer) in Mlp::layout(&sizes).iter().enumerate() {
            params[layer.weight..layer.bias]
                .copy_from_slice(&read(&format!("mlp.{l}.weight"), &[layer.n_out, layer.n_in])?);
            params[layer.bias..layer.bias + layer.n_out]
                .copy_from_slice(&read(&format!("mlp.{l}.bias"), &[layer.n_out])?);
        }
        let hash = match meta.get("encoding_hashgrid") {
            None => None,
            Some(text) => {
                let spec: crate::encoding::HashGridSpec =
                    serde_json::from_str(text).map_err(|_| parse_err("encoding_hashgrid"))?;
                spec.validate().map_err(|e| format!("metadata encoding_hashgrid: {e}"))?;
                if identity || !(1..=3).contains(&dim) {
                    return Err("metadata encoding_hashgrid needs a 1- to 3-D non-identity encoding".into());
                }
                Some(crate::encoding::HashGrid::new(spec, dim))
            }
        };
        let encoding = if identity {
            Encoding::identity(dim)
        } else if hash.is_some() && st.tensor("encoding.frequencies").is_err() {
            Encoding::from_frequencies(dim, vec![], scale)
        } else {
            let t = st
                .tensor("encoding.frequencies")
                .map_err(|_| "tensor encoding.frequencies is missing".to_string())?;
            let m = t.shape().first().copied().unwrap_or(0);
            Encoding::from_frequencies(dim, read("encoding.frequencies", &[m, dim])?, scale)
        };
        let encoding = match hash {
            Some(h) => {
                params.extend(read("encoding.hashgrid.table", &[h.table_len()])?);
                encoding.with_hash(h)
            }
            None => encoding,
        };
        if encoding.n_features() != sizes[0] {
            return Err(format!(
                "the encoding makes {} features but the network takes {}",
                encoding.n_features(),
                sizes[0]
            ));
        }
        let n = params.len();
        let adam = AdamState { m: read("adam.m", &[n])?, v: read("adam.v", &[n])?, step };
        let mut extra = meta;
        for k in [
            "format",
            "step",
            "sizes",
            "encoding_dim",
            "encoding_scale",
            "encoding_identity",
            "encoding_hashgrid",
        ] {
            extra.remove(k);
        }
        Ok(Checkpoint { encoding, state: TrainState { mlp: Mlp { sizes, params }, adam }, extra })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::EncodingConfig;
    use crate::model::ModelConfig;
    use crate::sample::CounterRng;

    #[test]
    fn round_trip_and_corruption() {
        let rng = CounterRng::new(1, 1);
        let hashgrid = |fourier_features| EncodingConfig::HashGrid {
            levels: 3,
            log2_table: 6,
            features_per_level: 2,
            base_resolution: 2,
            finest_resolution: 9,
            fourier_features,
            fourier_sigma: 2.0,
        };
        for cfg in [
            EncodingConfig::None,
            EncodingConfig::Gaussian { sigma: 3.0, features: 5, normalize: true },
            hashgrid(0),
            hashgrid(4),
        ] {
            let enc = Encoding::build(&cfg, 3, &rng);
            let sizes = Mlp::sizes_for(enc.n_features(), &ModelConfig { depth: 3, width: 8 }, 1);
            let mlp = Mlp::init_field(sizes, &enc, &rng);
            assert_eq!(mlp.params.len(), mlp.layer_params() + enc.table_len());
            let n = mlp.params.len();
            let adam = AdamState { m: (0..n).map(|i| i as f32).collect(), v: vec![0.5; n], step: 77 };
            let mut extra = HashMap::new();
            extra.insert("unit_from_mesh".into(), "{\"scale\":2}".into());
            let ck = Checkpoint { encoding: enc.clone(), state: TrainState { mlp, adam }, extra };
            let bytes = ck.to_bytes().unwrap();
            let back = Checkpoint::from_bytes(&bytes).unwrap();
            assert_eq!(back.state, ck.state);
            assert_eq!(back.encoding, enc);
            assert_eq!(back.extra, ck.extra);
            for cut in [0, 7, bytes.len() / 2, bytes.len() - 1] {
                assert!(Checkpoint::from_bytes(&bytes[..cut]).is_err());
            }
        }
    }
}
