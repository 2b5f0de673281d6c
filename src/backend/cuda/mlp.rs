//! The MLP on the device: dense layers are cuBLAS products (`Z = A·Wᵀ`, `dW = dZᵀ·A`,
//! `dA = dZ·W`, row-major as the CPU backend, through the column-major transposes) followed by
//! the element-wise kernels of `cuda/mlp.cu` (bias + ReLU, ReLU mask, bias-gradient column sums in
//! f64). Forward and backward in both precisions, side by side:
//! - fp32, for checking against the CPU backend.
//! - fp16 (the default): tensor-core products with fp32 accumulation. Features, hidden
//!   activations and hidden ∂L/∂Z live only in fp16; the hidden forward products go through
//!   cuBLASLt with the bias + ReLU fused into the epilogue (cuBLAS + `bias_relu_h` without it);
//!   one kernel applies the ReLU mask to each ∂L/∂A product and takes the next bias gradient's
//!   column sums. Weights and gradients stay fp32 (the fp16 weight copy is Adam's, see
//!   [`super::adam`]); ∂L/∂output is loss-scaled (see [`super::loss`]) and the scale is undone in
//!   the weight gradients.

use super::backend::CudaBackend;
use super::buffers::{missing, Buffers, Gpu};
use super::gemm::{Operand, OutOperand};
use super::grid;
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, LaunchConfig, PushKernelArg};
use half::f16;

/// Rows per partial sum of the bias gradient.
pub(super) const BIAS_ROWS_PER_PART: usize = 2048;
/// fp16: rows per partial sum of the bias gradient (at least; more when the grid would exceed
/// 65,535 parts).
pub(super) const FP16_ROWS_PER_PART: usize = 512;

/// fp16: rows per bias-gradient part for a batch of `n`.
pub(super) fn fp16_rows_per_part(n: usize) -> usize {
    FP16_ROWS_PER_PART.max(n.div_ceil(65_535).next_multiple_of(8))
}

impl Gpu {
    pub(super) fn to_f16(&self, src: &CudaView<f32>, dst: &mut CudaViewMut<f16>) -> crate::Result<()> {
        let n = src.len() as i64;
        if dst.len() < src.len() {
            return Err(crate::Error::Config("CUDA f32_to_f16: destination too small".into()));
        }
        launch!(self, "f32_to_f16", grid(src.len()), src, &n, dst)
    }

    /// Bias gradient, pass 1: f64 column sums of `dz` (rows × cols) over blocks of
    /// [`BIAS_ROWS_PER_PART`] rows into `partial`; returns the number of parts.
    pub(super) fn column_sums_partial(
        &self,
        dz: &CudaView<f32>,
        rows: usize,
        cols: usize,
        partial: &mut CudaSlice<f64>,
    ) -> crate::Result<usize> {
        let parts = rows.div_ceil(BIAS_ROWS_PER_PART);
        let cfg = LaunchConfig {
            grid_dim: (cols.div_ceil(32) as u32, parts as u32, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        let (rows_i, cols_i, rpp) = (rows as i32, cols as i32, BIAS_ROWS_PER_PART as i32);
        let mut partial = partial.slice_mut(0..parts * cols);
        launch!(self, "column_sums_partial", cfg, dz, &rows_i, &cols_i, &rpp, &mut partial)?;
        Ok(parts)
    }

    /// Bias gradient, pass 2: `gb = scale · Σ_part partial` (`parts` × cols partial sums).
    pub(super) fn column_sums_final(
        &self,
        partial: &CudaSlice<f64>,
        parts: usize,
        cols: usize,
        scale: f32,
        gb: &mut CudaViewMut<f32>,
    ) -> crate::Result<()> {
        let partial = partial.slice(0..parts * cols);
        let (parts_i, cols_i) = (parts as i32, cols as i32);
        launch!(self, "column_sums_final", grid(cols), &partial, &parts_i, &cols_i, &scale, gb)
    }
}

impl CudaBackend {
    /// Encodes `bufs.points[..n]` and runs every layer into `bufs.acts`.
    pub(super) fn forward_device(&self, bufs: &mut Buffers, n: usize) -> crate::Result<()> {
        if self.fp16() {
            return self.forward_fp16(bufs, n);
        }
        self.encode_device(bufs, n)?;
        let gpu = &self.gpu;
        let f = self.encoding.n_features();
        let n_i = n as i32;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, rest) = bufs.acts.split_at_mut(l);
            let mut z = rest[0].slice_mut(0..n * layer.n_out);
            let w = Operand::F32(self.params.slice(layer.weight..layer.bias));
            let input =
                if l == 0 { bufs.features.slice(0..n * f) } else { before[l - 1].slice(0..n * layer.n_in) };
            // Zᵀ (out×n, col-major) = W (op T of the in×out col-major view) · Aᵀ (in×n)
            gpu.gemm(
                (true, false),
                (layer.n_out, n, layer.n_in),
                1.0,
                (w, layer.n_in),
                (Operand::F32(input), layer.n_in),
                (&mut z, layer.n_out),
            )?;
            let bias = self.params.slice(layer.bias..layer.bias + layer.n_out);
            let (cols, relu) = (layer.n_out as i32, (l < last) as i32);
            launch!(gpu, "bias_act", grid(n * layer.n_out), &mut z, &bias, &n_i, &cols, &relu)?;
        }
        Ok(())
    }

    /// Back-propagates `bufs.deltas[0]` (∂L/∂output × grad_scale) into `self.grads`.
    pub(super) fn backward_device(&mut self, n: usize) -> crate::Result<()> {
        if self.fp16() {
            return self.backward_fp16(n);
        }
        let bufs = self.train.as_mut().ok_or_else(missing)?;
        let gpu = &self.gpu;
        let f = self.encoding.n_features();
        let inv_scale = 1.0 / self.grad_scale;
        let n_layers = self.layers.len();
        // index into bufs.deltas of the current ∂L/∂Z
        let mut cur = 0usize;
        for l in (0..n_layers).rev() {
            let layer = self.layers[l];
            let (n_in, n_out) = (layer.n_in, layer.n_out);
            let next = if cur == 1 { 2 } else { 1 };
            // dWᵀ (in×out, col-major) = Aᵀ (in×n) · dZ (op T of the out×n col-major view)
            {
                let mut gw = self.grads.slice_mut(layer.weight..layer.bias);
                let a =
                    if l == 0 { bufs.features.slice(0..n * f) } else { bufs.acts[l - 1].slice(0..n * n_in) };
                let dz = bufs.deltas[cur].slice(0..n * n_out);
                gpu.gemm(
                    (false, true),
                    (n_in, n_out, n),
                    inv_scale,
                    (Operand::F32(a), n_in),
                    (Operand::F32(dz), n_out),
                    (&mut gw, n_in),
                )?;
            }
            // db = column sums of dZ, in f64, in a fixed order
            {
                let dz = bufs.deltas[cur].slice(0..n * n_out);
                let parts = gpu.column_sums_partial(&dz, n, n_out, &mut bufs.partial)?;
                let mut gb = self.grads.slice_mut(layer.bias..layer.bias + n_out);
                gpu.column_sums_final(&bufs.partial, parts, n_out, inv_scale, &mut gb)?;
            }
            if l == 0 {
                break;
            }
            // dAᵀ (in×n, col-major) = Wᵀ (in×out view of W) · dZᵀ (out×n), then the ReLU mask
            {
                let (lo, hi) = bufs.deltas.split_at_mut(next.max(cur));
                let (src, dst) = if cur < next { (&lo[cur], &mut hi[0]) } else { (&hi[0], &mut lo[next]) };
                let mut da = dst.slice_mut(0..n * n_in);
                let w = Operand::F32(self.params.slice(layer.weight..layer.bias));
                let dz = Operand::F32(src.slice(0..n * n_out));
                gpu.gemm((false, false), (n_in, n, n_out), 1.0, (w, n_in), (dz, n_out), (&mut da, n_in))?;
                let below = bufs.acts[l - 1].slice(0..n * n_in);
                let len = (n * n_in) as i64;
                launch!(gpu, "relu_mask", grid(n * n_in), &mut da, &below, &len)?;
            }
            cur = next;
        }
        Ok(())
    }

    /// fp16 forward: fp16 features and hidden activations only. Each hidden product writes fp16
    /// (fp32 accumulation) with cuBLASLt's bias + ReLU epilogue, or through cuBLAS and then
    /// `bias_relu_h` in place; the output layer writes fp32 into `bufs.acts[last]`.
    pub(super) fn forward_fp16(&self, bufs: &mut Buffers, n: usize) -> crate::Result<()> {
        self.encode_fp16(bufs, n)?;
        let gpu = &self.gpu;
        let f = self.encoding.n_features();
        let n_i = n as i32;
        let last = self.layers.len() - 1;
        let p16 = self.params16.as_ref().ok_or_else(missing)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let w = Operand::F16(p16.slice(layer.weight..layer.bias));
            let (below, rest) = bufs.acts16.split_at_mut(l.min(last));
            let input = if l == 0 {
                bufs.features16.as_ref().ok_or_else(missing)?.slice(0..n * f)
            } else {
                below[l - 1].slice(0..n * layer.n_in)
            };
            let bias = self.params.slice(layer.bias..layer.bias + layer.n_out);
            let cols = layer.n_out as i32;
            let dims = (layer.n_out, n, layer.n_in);
            if l < last {
                let mut z = rest[0].slice_mut(0..n * layer.n_out);
                if let Some(lt) = self.lt.as_ref().filter(|_| self.lt_note.borrow().is_none()) {
                    let w = p16.slice(layer.weight..layer.bias);
                    let b16 = p16.slice(layer.bias..layer.bias + layer.n_out);
                    match lt.matmul_bias_relu(dims, &w, &input, &b16, &mut z) {
                        Ok(()) => continue,
                        // a shape cuBLASLt refuses: cuBLAS and bias_relu_h from here on
                        Err(reason) => *self.lt_note.borrow_mut() = Some(reason),
                    }
                }
                gpu.gemm_to(
                    (true, false),
                    dims,
                    1.0,
                    (w, layer.n_in),
                    (Operand::F16(input), layer.n_in),
                    (OutOperand::F16(&mut z), layer.n_out),
                )?;
                let relu = 1i32;
                launch!(gpu, "bias_relu_h", grid(n * layer.n_out / 2), &mut z, &bias, &n_i, &cols, &relu)?;
            } else {
                let mut z = bufs.acts[l].slice_mut(0..n * layer.n_out);
                gpu.gemm(
                    (true, false),
                    dims,
                    1.0,
                    (w, layer.n_in),
                    (Operand::F16(input), layer.n_in),
                    (&mut z, layer.n_out),
                )?;
                let relu = 0i32;
                launch!(gpu, "bias_act", grid(n * layer.n_out), &mut z, &bias, &n_i, &cols, &relu)?;
            }
        }
        Ok(())
    }

    /// fp16 backward: ∂L/∂Z of the hidden layers only in fp16 (two ping-pong buffers); each
    /// ∂L/∂A product writes fp16 and `relu_mask_colsum_h` masks it in place while summing its
    /// columns for the bias gradient of the layer below.
    pub(super) fn backward_fp16(&mut self, n: usize) -> crate::Result<()> {
        let bufs = self.train.as_mut().ok_or_else(missing)?;
        let gpu = &self.gpu;
        let f = self.encoding.n_features();
        let n_i = n as i32;
        let inv_scale = 1.0 / self.grad_scale;
        let n_layers = self.layers.len();
        let p16 = self.params16.as_ref().ok_or_else(missing)?;
        let mut d16 = [bufs.delta16.take().ok_or_else(missing)?, bufs.delta16b.take().ok_or_else(missing)?];
        let r = (|| -> crate::Result<()> {
            // the output layer: ∂L/∂Z in fp32 (n × n_out, small) → fp16, and its column sums
            let n_out = self.layers[n_layers - 1].n_out;
            gpu.to_f16(&bufs.deltas[0].slice(0..n * n_out), &mut d16[0].slice_mut(0..n * n_out))?;
            let mut parts =
                gpu.column_sums_partial(&bufs.deltas[0].slice(0..n * n_out), n, n_out, &mut bufs.partial)?;
            let mut cur = 0usize;
            for l in (0..n_layers).rev() {
                let layer = self.layers[l];
                let (n_in, n_out) = (layer.n_in, layer.n_out);
                // dWᵀ (in×out, col-major) = Aᵀ (in×n) · dZ (op T of the out×n col-major view)
                {
                    let mut gw = self.grads.slice_mut(layer.weight..layer.bias);
                    let a = if l == 0 {
                        bufs.features16.as_ref().ok_or_else(missing)?.slice(0..n * f)
                    } else {
                        bufs.acts16[l - 1].slice(0..n * n_in)
                    };
                    let dz = Operand::F16(d16[cur].slice(0..n * n_out));
                    gpu.gemm(
                        (false, true),
                        (n_in, n_out, n),
                        inv_scale,
                        (Operand::F16(a), n_in),
                        (dz, n_out),
                        (&mut gw, n_in),
                    )?;
                }
                // db from the partial column sums made when dZ was
                {
                    let mut gb = self.grads.slice_mut(layer.bias..layer.bias + n_out);
                    gpu.column_sums_final(&bufs.partial, parts, n_out, inv_scale, &mut gb)?;
                }
                if l == 0 {
                    break;
                }
                // dAᵀ (in×n, col-major) = Wᵀ · dZᵀ, in fp16, then the ReLU mask and column sums
                let (lo, hi) = d16.split_at_mut(1);
                let (src, dst) = if cur == 0 { (&lo[0], &mut hi[0]) } else { (&hi[0], &mut lo[0]) };
                let mut da = dst.slice_mut(0..n * n_in);
                let rpp = fp16_rows_per_part(n);
                parts = n.div_ceil(rpp);
                let cfg = LaunchConfig {
                    grid_dim: (n_in.div_ceil(64) as u32, parts as u32, 1),
                    block_dim: (32, 8, 1),
                    shared_mem_bytes: 0,
                };
                let (cols, rpp_i) = (n_in as i32, rpp as i32);
                let mut partial = bufs.partial.slice_mut(0..parts * n_in);
                let w = Operand::F16(p16.slice(layer.weight..layer.bias));
                let dz = Operand::F16(src.slice(0..n * n_out));
                gpu.gemm_to(
                    (false, false),
                    (n_in, n, n_out),
                    1.0,
                    (w, n_in),
                    (dz, n_out),
                    (OutOperand::F16(&mut da), n_in),
                )?;
                let below = bufs.acts16[l - 1].slice(0..n * n_in);
                launch!(gpu, "relu_mask_colsum_h", cfg, &mut da, &below, &n_i, &cols, &rpp_i, &mut partial)?;
                cur = 1 - cur;
            }
            Ok(())
        })();
        let [a, b] = d16;
        bufs.delta16 = Some(a);
        bufs.delta16b = Some(b);
        r
    }
}
