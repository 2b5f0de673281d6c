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
//!
//! What tensors a checkpoint of a network holds is one function, [`layout`] (the encoding's
//! share from [`encoding_tensors`]): the writer writes that list, the reader reads it, and a run's
//! checkpoint is checked against the list its `run.toml` implies ([`Checkpoint::check_layout`])
//! before any of it is used. A new encoding with tensors of its own only has to add them to
//! [`encoding_tensors`]. Every value read must be finite (and Adam's second moment ≥ 0).

use super::Mlp;
use crate::backend::TrainState;
use crate::encoding::Encoding;
use crate::train::AdamState;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

const FORMAT: &str = "ffvol-checkpoint-1";

/// One tensor of a checkpoint: its name, shape and number format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
}

impl TensorSpec {
    fn f32(name: impl Into<String>, shape: Vec<usize>) -> Self {
        TensorSpec { name: name.into(), shape, dtype: Dtype::F32 }
    }

    fn describe(&self) -> String {
        format!("{} {:?} {:?}", self.name, self.dtype, self.shape)
    }
}

/// The tensors of the encoding's own: `encoding.frequencies` (m×d; none for `none`, and none for
/// a hash grid without Fourier features before it) and the hash grid's tables
/// (`encoding.hashgrid.table`, trainable: they follow the MLP's layers in the parameters).
pub fn encoding_tensors(encoding: &Encoding) -> Vec<TensorSpec> {
    let mut specs = vec![];
    if encoding.identity {
        return specs;
    }
    let m = encoding.frequencies();
    if m > 0 || encoding.hash.is_none() {
        specs.push(TensorSpec::f32("encoding.frequencies", vec![m, encoding.dim]));
    }
    if encoding.hash.is_some() {
        specs.push(TensorSpec::f32("encoding.hashgrid.table", vec![encoding.table_len()]));
    }
    specs
}

/// Every tensor a checkpoint of `encoding` → MLP of layer `sizes` holds, in the order written:
/// the MLP's weights and biases, the encoding's tensors, Adam's moments.
pub fn layout(encoding: &Encoding, sizes: &[usize]) -> Vec<TensorSpec> {
    let mut specs = Vec::new();
    for (l, w) in sizes.windows(2).enumerate() {
        specs.push(TensorSpec::f32(format!("mlp.{l}.weight"), vec![w[1], w[0]]));
        specs.push(TensorSpec::f32(format!("mlp.{l}.bias"), vec![w[1]]));
    }
    specs.extend(encoding_tensors(encoding));
    let n = Mlp::n_params(sizes) + encoding.table_len();
    specs.push(TensorSpec::f32("adam.m", vec![n]));
    specs.push(TensorSpec::f32("adam.v", vec![n]));
    specs
}

/// The parameter count of layer `sizes` (read from a file), or None when it overflows.
fn checked_n_params(sizes: &[usize]) -> Option<usize> {
    sizes.windows(2).try_fold(0usize, |acc, w| w[0].checked_mul(w[1])?.checked_add(w[1])?.checked_add(acc))
}

pub struct Checkpoint {
    pub encoding: Encoding,
    pub state: TrainState,
    /// Job-specific strings (JSON values), e.g. `unit_from_mesh`.
    pub extra: HashMap<String, String>,
    /// The tensors the file held (name, shape, dtype), sorted by name.
    pub tensors: Vec<TensorSpec>,
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The safetensors file `bytes` with its JSON header's keys in sorted order. `safetensors`
/// writes the metadata from a `HashMap`, whose order changes from process to process, so two
/// identical runs would write checkpoints that differ in bytes; sorted, a checkpoint is a pure
/// function of its content (the kill/resume test compares the files).
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    use std::collections::BTreeMap;
    let bad = || "the serialised header is malformed".to_string();
    let len = bytes.get(..8).ok_or_else(bad)?;
    let n = usize::try_from(u64::from_le_bytes(len.try_into().map_err(|_| bad())?)).map_err(|_| bad())?;
    let end = n.checked_add(8).filter(|&e| e <= bytes.len()).ok_or_else(bad)?;
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..end]).map_err(|e| format!("the serialised header: {e}"))?;
    fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, String> {
        serde_json::to_string(v).map_err(|e| format!("the serialised header: {e}"))
    }
    let mut text = String::from("{");
    if let Some(meta) = header.remove("__metadata__") {
        let meta: BTreeMap<String, String> =
            serde_json::from_value(meta).map_err(|e| format!("the serialised metadata: {e}"))?;
        text.push_str("\"__metadata__\":");
        text.push_str(&json(&meta)?);
    }
    for (name, info) in &header {
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&json(name.as_str())?);
        text.push(':');
        text.push_str(&json(info)?);
    }
    text.push('}');
    let mut head = text.into_bytes();
    head.resize(head.len().next_multiple_of(8), b' ');
    // the data offsets count from the header's end, so a header of another length would do too
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

impl Checkpoint {
    /// The data of tensor `spec` of this checkpoint (one of [`layout`]'s names).
    fn tensor_data(&self, spec: &TensorSpec) -> crate::Result<&[f32]> {
        let mlp = &self.state.mlp;
        let layers = mlp.layers();
        let layer = |l: &str| l.parse::<usize>().ok().and_then(|l| layers.get(l));
        let data = match spec.name.split('.').collect::<Vec<_>>().as_slice() {
            ["mlp", l, "weight"] => layer(l).map(|x| &mlp.params[x.weight..x.bias]),
            ["mlp", l, "bias"] => layer(l).map(|x| &mlp.params[x.bias..x.bias + x.n_out]),
            ["encoding", "frequencies"] => Some(&self.encoding.b[..]),
            ["encoding", "hashgrid", "table"] => mlp.params.get(mlp.layer_params()..),
            ["adam", "m"] => Some(&self.state.adam.m[..]),
            ["adam", "v"] => Some(&self.state.adam.v[..]),
            _ => None,
        };
        data.filter(|d| Some(d.len()) == spec.shape.iter().try_fold(1usize, |a, &s| a.checked_mul(s)))
            .ok_or_else(|| crate::Error::Input(format!("checkpoint: no data for tensor {}", spec.describe())))
    }

    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> crate::Result<Vec<u8>> {
        let mlp = &self.state.mlp;
        let mut owned: Vec<(TensorSpec, Vec<u8>)> = Vec::new();
        for spec in layout(&self.encoding, &mlp.sizes) {
            let data = bytes(self.tensor_data(&spec)?);
            owned.push((spec, data));
        }
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
            .map(|(spec, data)| {
                TensorView::new(spec.dtype, spec.shape.clone(), data).map(|v| (spec.name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| crate::Error::Input(format!("checkpoint: {e}")))?;
        let bytes = safetensors::tensor::serialize(views, Some(meta))
            .map_err(|e| crate::Error::Input(format!("checkpoint: {e}")))?;
        canonical_header(bytes).map_err(|e| crate::Error::Input(format!("checkpoint: {e}")))
    }

    pub fn save(&self, path: &Path) -> crate::Result<()> {
        crate::io::write_bytes_atomic(path, &self.to_bytes()?)
    }

    pub fn load(path: &Path) -> crate::Result<Self> {
        let data = crate::io::read_file(path)?;
        Self::from_bytes(&data).map_err(|m| crate::Error::format(path, m))
    }

    /// Checks the file's tensors against `expected` (the layout its run implies): the same names,
    /// shapes and number formats, nothing missing and nothing more. `what` names where `expected`
    /// comes from, for the message (e.g. `run.toml`).
    pub fn check_layout(&self, expected: &[TensorSpec], what: &str) -> Result<(), String> {
        let mut problems = Vec::new();
        for e in expected {
            match self.tensors.iter().find(|t| t.name == e.name) {
                None => problems.push(format!("{} is missing", e.describe())),
                Some(t) if t != e => problems.push(format!(
                    "{} is {:?} {:?}, expected {:?} {:?}",
                    e.name, t.dtype, t.shape, e.dtype, e.shape
                )),
                Some(_) => {}
            }
        }
        for t in &self.tensors {
            if !expected.iter().any(|e| e.name == t.name) {
                problems.push(format!("{} is not part of the network", t.describe()));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let shown = problems.len().min(4);
        Err(format!(
            "the checkpoint does not hold the network {what} describes (a checkpoint of another run?): {}{}",
            problems[..shown].join("; "),
            if problems.len() > shown {
                format!("; and {} more", problems.len() - shown)
            } else {
                String::new()
            }
        ))
    }

    pub fn from_bytes(data: &[u8]) -> Result<Self, String> {
        let (_, metadata) =
            SafeTensors::read_metadata(data).map_err(|e| format!("not a safetensors file: {e}"))?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(format!("not an ffvol checkpoint (format {:?})", meta.get("format")));
        }
        // deserialize checks every tensor's offsets against the file: data is bounded by its size
        let st = SafeTensors::deserialize(data).map_err(|e| format!("not a safetensors file: {e}"))?;
        let mut tensors: Vec<TensorSpec> = st
            .tensors()
            .into_iter()
            .map(|(name, t)| TensorSpec { name, shape: t.shape().to_vec(), dtype: t.dtype() })
            .collect();
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let get = |k: &str| meta.get(k).ok_or_else(|| format!("metadata has no {k}"));
        let parse_err = |k: &str| format!("metadata {k} is malformed");
        let sizes: Vec<usize> = serde_json::from_str(get("sizes")?).map_err(|_| parse_err("sizes"))?;
        let step: u64 = get("step")?.parse().map_err(|_| parse_err("step"))?;
        let dim: usize = get("encoding_dim")?.parse().map_err(|_| parse_err("encoding_dim"))?;
        let scale: f32 = get("encoding_scale")?.parse().map_err(|_| parse_err("encoding_scale"))?;
        let identity: bool = get("encoding_identity")?.parse().map_err(|_| parse_err("encoding_identity"))?;
        if sizes.len() < 2 || sizes.contains(&0) || !(1..=3).contains(&dim) {
            return Err(format!("metadata sizes {sizes:?} / encoding_dim {dim} are malformed"));
        }
        if !scale.is_finite() {
            return Err(format!("metadata encoding_scale is {scale}, not a finite number"));
        }
        let n = checked_n_params(&sizes).ok_or_else(|| format!("metadata sizes {sizes:?} overflow"))?;
        // The shapes the metadata implies, checked against the file before anything is allocated
        // from them (the tensors' data lies inside the file, so this bounds every allocation).
        // the hash grid first: its tables are part of the parameters and of the features
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
        let m = match (identity, st.tensor("encoding.frequencies")) {
            (true, _) => 0,
            (false, Ok(t)) => t.shape().first().copied().unwrap_or(0),
            (false, Err(_)) if hash.is_some() => 0,
            (false, Err(_)) => return Err("tensor encoding.frequencies is missing".into()),
        };
        // an encoding of the file's shape (m×dim is bounded by the file's size: deserialize checked it)
        let shell = if identity {
            Encoding::identity(dim)
        } else {
            let len = m.checked_mul(dim).ok_or("tensor encoding.frequencies is too large")?;
            Encoding::from_frequencies(dim, vec![0.0; len], 1.0)
        };
        let shell = match &hash {
            Some(h) => shell.with_hash(h.clone()),
            None => shell,
        };
        if shell.n_features() != sizes[0] {
            return Err(format!(
                "the encoding makes {} features but the network takes {}",
                shell.n_features(),
                sizes[0]
            ));
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
            let v: Vec<f32> =
                t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(format!("tensor {name} holds {} at index {i}: the checkpoint is corrupt", v[i]));
            }
            Ok(v)
        };
        let expected = layout(&shell, &sizes);
        for spec in &expected {
            let t = st.tensor(&spec.name).map_err(|_| format!("tensor {} is missing", spec.name))?;
            if t.dtype() != spec.dtype || t.shape() != spec.shape {
                return Err(format!(
                    "tensor {} has shape {:?} {:?}, expected {:?} {:?} (metadata sizes {sizes:?})",
                    spec.name,
                    t.shape(),
                    t.dtype(),
                    spec.dtype,
                    spec.shape
                ));
            }
        }
        let mut params = vec![0.0; n];
        for (l, layer) in Mlp::layout(&sizes).iter().enumerate() {
            params[layer.weight..layer.bias]
                .copy_from_slice(&read(&format!("mlp.{l}.weight"), &[layer.n_out, layer.n_in])?);
            params[layer.bias..layer.bias + layer.n_out]
                .copy_from_slice(&read(&format!("mlp.{l}.bias"), &[layer.n_out])?);
        }
        let encoding = if identity {
            Encoding::identity(dim)
        } else if hash.is_some() && m == 0 {
            Encoding::from_frequencies(dim, vec![], scale)
        } else {
            Encoding::from_frequencies(dim, read("encoding.frequencies", &[m, dim])?, scale)
        };
        let encoding = match hash {
            Some(h) => {
                params.extend(read("encoding.hashgrid.table", &[h.table_len()])?);
                encoding.with_hash(h)
            }
            None => encoding,
        };
        let n = params.len();
        let adam = AdamState { m: read("adam.m", &[n])?, v: read("adam.v", &[n])?, step };
        if let Some(i) = adam.v.iter().position(|&v| v < 0.0) {
            return Err(format!(
                "tensor adam.v holds {} at index {i}: a second moment is never negative",
                adam.v[i]
            ));
        }
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
        Ok(Checkpoint { encoding, state: TrainState { mlp: Mlp { sizes, params }, adam }, extra, tensors })
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
            let ck =
                Checkpoint { encoding: enc.clone(), state: TrainState { mlp, adam }, extra, tensors: vec![] };
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

    /// The same checkpoint gives the same bytes whatever order its metadata map iterates in
    /// (every `HashMap` has its own random order), and the sorted header still reads back.
    #[test]
    fn bytes_do_not_depend_on_the_metadata_maps_order() {
        let rng = CounterRng::new(2, 1);
        let cfg = EncodingConfig::Gaussian { sigma: 3.0, features: 4, normalize: true };
        let enc = Encoding::build(&cfg, 3, &rng);
        let sizes = Mlp::sizes_for(enc.n_features(), &ModelConfig { depth: 2, width: 4 }, 1);
        let mlp = Mlp::init_field(sizes, &enc, &rng);
        let n = mlp.params.len();
        let adam = AdamState { m: vec![0.25; n], v: vec![0.5; n], step: 3 };
        let pairs: Vec<(String, String)> =
            (0..24).map(|i| (format!("key_{i}"), format!("{{\"v\":{i}}}"))).collect();
        let state = TrainState { mlp, adam };
        let make = |order: &mut dyn Iterator<Item = &(String, String)>| Checkpoint {
            encoding: enc.clone(),
            state: state.clone(),
            extra: order.cloned().collect(),
            tensors: vec![],
        };
        let first = make(&mut pairs.iter()).to_bytes().unwrap();
        for k in 0..8 {
            let other = if k % 2 == 0 { make(&mut pairs.iter().rev()) } else { make(&mut pairs.iter()) };
            assert_eq!(other.to_bytes().unwrap(), first, "try {k}: the bytes depend on the map's order");
        }
        let back = Checkpoint::from_bytes(&first).unwrap();
        assert_eq!(back.state, state);
        assert_eq!(back.extra.len(), pairs.len());
        // and what the python package reads: the header is JSON, keys sorted, then the data
        let len = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        assert_eq!(len % 8, 0);
        let head = std::str::from_utf8(&first[8..8 + len]).unwrap();
        let (a, b) = (head.find("\"key_1\"").unwrap(), head.find("\"key_2\"").unwrap());
        assert!(a < b, "{head}");
    }
}
