//! The MLP: parameter layout, initialisation, checkpoints.

pub mod checkpoint;

use crate::sample::CounterRng;
use serde::{Deserialize, Serialize};

/// Network shape as written in `run.toml` (`[model]`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Dense layers, the output layer included (the paper's "8 × 256" is depth 8: seven hidden
    /// ReLU layers of width 256 and one linear output).
    pub depth: usize,
    /// Width of the hidden layers.
    pub width: usize,
}

impl ModelConfig {
    pub fn validate(&self) -> crate::Result<()> {
        if self.depth < 1 || self.depth > 64 {
            return Err(crate::Error::Config(format!("model depth must be in 1..=64, got {}", self.depth)));
        }
        if self.width < 1 || self.width > 8192 {
            return Err(crate::Error::Config(format!("model width must be in 1..=8192, got {}", self.width)));
        }
        Ok(())
    }
}

/// A ReLU MLP with a linear output. All parameters live in one flat vector, layer by layer:
/// weights (row-major out×in) then biases (out), so the optimiser and checkpoints see one array.
/// An encoding with trainable tables (the hash grid) keeps them after the layers, in the same
/// vector ([`Mlp::init_field`]): the same Adam trains them.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// Layer widths: [inputs, hidden…, outputs].
    pub sizes: Vec<usize>,
    pub params: Vec<f32>,
}

/// Where one layer's parameters sit in the flat vector.
#[derive(Clone, Copy, Debug)]
pub struct LayerLayout {
    pub n_in: usize,
    pub n_out: usize,
    pub weight: usize,
    pub bias: usize,
}

impl Mlp {
    pub fn sizes_for(n_in: usize, config: &ModelConfig, n_out: usize) -> Vec<usize> {
        let mut sizes = vec![n_in];
        sizes.extend(std::iter::repeat_n(config.width, config.depth - 1));
        sizes.push(n_out);
        sizes
    }

    pub fn layout(sizes: &[usize]) -> Vec<LayerLayout> {
        let mut offset = 0;
        sizes
            .windows(2)
            .map(|w| {
                let l = LayerLayout { n_in: w[0], n_out: w[1], weight: offset, bias: offset + w[0] * w[1] };
                offset += w[0] * w[1] + w[1];
                l
            })
            .collect()
    }

    pub fn n_params(sizes: &[usize]) -> usize {
        sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// Glorot-uniform weights, U(±√(6/(in+out))), and zero biases, from the run's seed.
    pub fn init(sizes: Vec<usize>, rng: &CounterRng) -> Self {
        let mut params = vec![0.0; Self::n_params(&sizes)];
        for l in Self::layout(&sizes) {
            let limit = (6.0 / (l.n_in + l.n_out) as f32).sqrt();
            for (i, w) in params[l.weight..l.bias].iter_mut().enumerate() {
                *w = limit * (2.0 * rng.uniform((l.weight + i) as u64) - 1.0);
            }
        }
        Mlp { sizes, params }
    }

    /// The network of a field whose γ is `encoding`: [`Mlp::init`]'s layers, then the encoding's
    /// trainable tables (if any) from the same stream, after the layers' indices.
    pub fn init_field(sizes: Vec<usize>, encoding: &crate::encoding::Encoding, rng: &CounterRng) -> Self {
        let mut mlp = Self::init(sizes, rng);
        if let Some(h) = &encoding.hash {
            let first = mlp.params.len() as u64;
            mlp.params.extend(h.init_table(rng, first));
        }
        mlp
    }

    /// Parameters of the layers; an encoding's tables follow them in `params`.
    pub fn layer_params(&self) -> usize {
        Self::n_params(&self.sizes)
    }

    pub fn layers(&self) -> Vec<LayerLayout> {
        Self::layout(&self.sizes)
    }
}
