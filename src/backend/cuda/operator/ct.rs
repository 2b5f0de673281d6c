//! [`GpuProjector`]: the discrete ray projector A of [`crate::operator::ray::RayProjector`] and
//! its exact adjoint Aᵀ on the GPU (`cuda/ct.cu`), for `fit ct`'s grid rendering.
//!
//! ## Design
//!
//! The rays are the CPU projector's own segments (clipped, sampled, weighted on the host once)
//! and are uploaded once, so both projectors sample the same points of the same rays; the GPU
//! reaches sample k as `start + k·delta` with the CPU's roundings, so both read the same sample
//! points and differ only in the order of their sums. The forward runs one warp per ray; the adjoint is a
//! gather, one thread per voxel, that finds the rays through each voxel's interpolation support
//! view by view from the scan geometry (parallel, fan and cone beams), so it needs no atomics and
//! gives the same bits on every run. Both kernels compute each (ray, sample, voxel) weight with
//! the same code, so on the GPU ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ to summation rounding.
//!
//! [`GpuProjector::loss_and_gradient`] is `fit ct`'s step: one upload of the image, A, the
//! residual against the measured projections (kept on the device) and ½·mean(r²), Aᵀ of the
//! residual / m, one download of the gradient image.
//!
//! [`GpuProjector::sigmoid_loss_and_gradient_device`] is the device-resident form of that step
//! (with the projector made [`GpuProjector::on_stream`] on the network backend's stream): the
//! network's raw outputs z are read on the device, the image σ(z) is made there, and
//! ∂L/∂z = Aᵀ(r / m) · p(1 − p) stays there for the backend's backward; only the loss and
//! max |∂L/∂z| come back (two f64).

use crate::backend::cuda::{cuda_error, Runtime, ONE_BLOCK};
use crate::operator::ct_geometry::{Beam, Scan};
use crate::operator::ray::RayProjector;
use crate::{Error, Result};
use cudarc::driver::{CudaSlice, CudaStream, CudaView, LaunchConfig, PushKernelArg};
use std::sync::Arc;

/// Threads per block of the forward (8 rays of 32 lanes).
const FORWARD_THREADS: u32 = 256;
/// Threads per block of the adjoint.
const ADJOINT_THREADS: u32 = 128;
/// Threads per block of the residual (the kernel's block sum assumes 256).
const RESIDUAL_THREADS: u32 = 256;
/// Most f64 partial sums of the loss.
const RESIDUAL_BLOCKS: usize = 1024;
/// How far (in voxels) the adjoint widens each voxel's support box before projecting it onto
/// the detector: far more than any rounding of the sample points, so no ray is missed.
const SUPPORT_MARGIN: f32 = 0.25;

/// What the kernels read about the scan, as uploaded (see cuda/ct.cu): the rays' segments
/// (`seg_a` = start.xyz and the sample count's bits, `seg_b` = delta.xyz and the weight, per ray),
/// (cos θ, sin θ) per view, and the geometry the adjoint projects voxels with.
struct Tables {
    seg_a: Vec<f32>,
    seg_b: Vec<f32>,
    views: Vec<f32>,
    geo: Vec<f32>,
}

impl Tables {
    fn new(scan: &Scan, projector: &RayProjector) -> Result<Self> {
        let n_rays = projector.n_rays();
        let mut seg_a = Vec::with_capacity(4 * n_rays);
        let mut seg_b = Vec::with_capacity(4 * n_rays);
        for i in 0..n_rays {
            let (start, delta, n, weight) = projector.segment(i);
            if n > i32::MAX as u32 {
                return Err(Error::Config(format!("CUDA projector: ray {i} has {n} samples")));
            }
            seg_a.extend_from_slice(&[start[0], start[1], start[2], f32::from_bits(n)]);
            seg_b.extend_from_slice(&[delta[0], delta[1], delta[2], weight]);
        }
        let views: Vec<f32> = scan
            .angles
            .iter()
            .flat_map(|&th| {
                let (s, c) = th.sin_cos();
                [c as f32, s as f32]
            })
            .collect();
        let lo = scan.vol_min();
        let divergent = if scan.beam == Beam::Parallel { 0.0 } else { 1.0 };
        let geo: Vec<f32> = [
            divergent,
            scan.dso,
            scan.dsd,
            scan.det_pixel_size[0],
            scan.det_pixel_size[1],
            scan.det_offset[0],
            scan.det_offset[1],
            lo[0],
            lo[1],
            lo[2],
            scan.voxel_size[0],
            scan.voxel_size[1],
            scan.voxel_size[2],
        ]
        .iter()
        .map(|&x| x as f32)
        .chain([SUPPORT_MARGIN])
        .collect();
        Ok(Tables { seg_a, seg_b, views, geo })
    }
}

/// The projector of one scan on the GPU, with its device buffers.
pub struct GpuProjector {
    rt: Arc<Runtime>,
    stream: Arc<CudaStream>,
    dims: i32,
    voxels: [i32; 3],
    n_rays: usize,
    n_views: i32,
    det: [i32; 2],
    seg_a: CudaSlice<f32>,
    seg_b: CudaSlice<f32>,
    views: CudaSlice<f32>,
    geo: CudaSlice<f32>,
    volume: CudaSlice<f32>,
    rays: CudaSlice<f32>,
    resid: CudaSlice<f32>,
    measured: Option<CudaSlice<f32>>,
    back: CudaSlice<f32>,
    partial: CudaSlice<f64>,
    /// The device-resident step: ∂L/∂z, max |∂L/∂z| per block, and [loss, max |∂L/∂z|].
    grad: CudaSlice<f32>,
    partial_max: CudaSlice<f32>,
    loss_max: CudaSlice<f64>,
}

fn blocks(items: usize, per_block: usize) -> Result<u32> {
    u32::try_from(items.div_ceil(per_block).max(1))
        .map_err(|_| Error::Config(format!("CUDA projector: {items} items need too many blocks")))
}

impl GpuProjector {
    /// Uploads `projector`'s rays (made from `scan`) and allocates the buffers. Errors (never
    /// panics) when CUDA is not usable or the sizes do not fit.
    pub fn new(scan: &Scan, projector: &RayProjector) -> Result<Self> {
        Self::make(scan, projector, None)
    }

    /// [`Self::new`] on a given stream of the process's context (the CUDA backend's,
    /// [`crate::backend::cuda::CudaBackend::stream`]), for [`Self::sigmoid_loss_and_gradient_device`].
    pub fn on_stream(scan: &Scan, projector: &RayProjector, stream: Arc<CudaStream>) -> Result<Self> {
        Self::make(scan, projector, Some(stream))
    }

    fn make(scan: &Scan, projector: &RayProjector, stream: Option<Arc<CudaStream>>) -> Result<Self> {
        let rt = crate::backend::cuda::runtime()
            .map_err(|why| Error::Config(format!("CUDA is not usable: {why}")))?;
        let n_rays = projector.n_rays();
        let n_vox = projector.n_voxels();
        if n_rays != scan.n_rays()
            || projector.voxels() != scan.voxels
            || projector.dims() != scan.dims
            || projector.rays_per_view() != scan.rays_per_view()
        {
            return Err(Error::Config("CUDA projector: the ray projector was made for another scan".into()));
        }
        if n_rays == 0 || n_rays > i32::MAX as usize / 32 || n_vox == 0 || n_vox > 1 << 30 {
            return Err(Error::Config(format!(
                "CUDA projector: {n_rays} rays and {n_vox} voxels are out of range (1..2^26 rays, 1..2^30 voxels)"
            )));
        }
        let to_i32 = |v: usize| {
            i32::try_from(v).map_err(|_| Error::Config(format!("CUDA projector: {v} is too large")))
        };
        let Tables { seg_a, seg_b, views, geo } = Tables::new(scan, projector)?;

        let stream = match stream {
            Some(s) => s,
            None => rt.ctx.new_stream().map_err(|e| cuda_error("creating a stream", e))?,
        };
        let upload = |src: &[f32]| -> Result<CudaSlice<f32>> {
            stream.clone_htod(src).map_err(|e| cuda_error(&format!("uploading {} values", src.len()), e))
        };
        let (seg_a, seg_b, views, geo) = (upload(&seg_a)?, upload(&seg_b)?, upload(&views)?, upload(&geo)?);
        let zeros = |n: usize| -> Result<CudaSlice<f32>> {
            stream.alloc_zeros::<f32>(n.max(1)).map_err(|e| cuda_error(&format!("allocating {n} values"), e))
        };
        let (volume, rays, resid, back) = (zeros(n_vox)?, zeros(n_rays)?, zeros(n_rays)?, zeros(n_vox)?);
        let partial = stream
            .alloc_zeros::<f64>(RESIDUAL_BLOCKS)
            .map_err(|e| cuda_error("allocating the loss partial sums", e))?;
        let (grad, partial_max) = (zeros(n_vox)?, zeros(RESIDUAL_BLOCKS)?);
        let loss_max =
            stream.alloc_zeros::<f64>(2).map_err(|e| cuda_error("allocating the loss and maximum", e))?;
        Ok(GpuProjector {
            dims: to_i32(scan.dims)?,
            voxels: [to_i32(scan.voxels[0])?, to_i32(scan.voxels[1])?, to_i32(scan.voxels[2])?],
            n_rays,
            n_views: to_i32(scan.n_views())?,
            det: [to_i32(scan.det_pixels[0])?, to_i32(scan.det_pixels[1])?],
            rt,
            stream,
            seg_a,
            seg_b,
            views,
            geo,
            volume,
            rays,
            resid,
            measured: None,
            back,
            partial,
            grad,
            partial_max,
            loss_max,
        })
    }

    /// "gpu (NVIDIA H200)", for logs.
    pub fn describe(&self) -> String {
        format!("gpu ({})", self.rt.device_name)
    }

    pub fn n_rays(&self) -> usize {
        self.n_rays
    }
    pub fn n_voxels(&self) -> usize {
        self.voxels.iter().map(|&v| v as usize).product()
    }

    /// Keeps the measured projections on the device for [`Self::loss_and_gradient`].
    pub fn set_measured(&mut self, measured: &[f32]) -> Result<()> {
        self.check_len("measured projections", measured.len(), self.n_rays)?;
        let m = self.stream.clone_htod(measured).map_err(|e| cuda_error("uploading the projections", e))?;
        self.measured = Some(m);
        Ok(())
    }

    /// out = A volume.
    pub fn forward(&mut self, volume: &[f32], out: &mut [f32]) -> Result<()> {
        self.check_len("forward: the volume", volume.len(), self.n_voxels())?;
        self.check_len("forward: the output", out.len(), self.n_rays)?;
        self.upload_volume(volume)?;
        self.launch_forward()?;
        self.download_rays(out)
    }

    /// out = Aᵀ values (overwritten).
    pub fn adjoint(&mut self, values: &[f32], out: &mut [f32]) -> Result<()> {
        self.check_len("adjoint: the values", values.len(), self.n_rays)?;
        self.check_len("adjoint: the output", out.len(), self.n_voxels())?;
        self.stream
            .memcpy_htod(values, &mut self.resid.slice_mut(0..values.len()))
            .map_err(|e| cuda_error("copying ray values to the device", e))?;
        self.launch_adjoint()?;
        self.download_back(out)
    }

    /// `fit ct`'s grid step: with r = A image − measured and m rays, returns ½·mean(r²) and
    /// writes grad = Aᵀ (r / m), the loss's gradient with respect to the image. Needs
    /// [`Self::set_measured`] first.
    pub fn loss_and_gradient(&mut self, image: &[f32], grad: &mut [f32]) -> Result<f32> {
        self.check_len("the image", image.len(), self.n_voxels())?;
        self.check_len("the gradient", grad.len(), self.n_voxels())?;
        if self.measured.is_none() {
            return Err(Error::Config("CUDA projector: loss_and_gradient before set_measured".into()));
        }
        self.upload_volume(image)?;
        self.launch_forward()?;
        let parts = self.launch_residual()?;
        let m = self.n_rays as f32;
        self.launch_adjoint()?;
        let mut partial = vec![0.0f64; parts];
        self.stream
            .memcpy_dtoh(&self.partial.slice(0..parts), &mut partial)
            .map_err(|e| cuda_error("copying the loss from the device", e))?;
        self.download_back(grad)?;
        let total: f64 = partial.iter().sum();
        Ok((total / m as f64) as f32)
    }

    /// The device-resident form of `fit ct`'s grid step on the network's raw outputs `z` (one
    /// per voxel, on the device, ordered on this projector's stream: make it with
    /// [`Self::on_stream`] on the backend's): the image p = σ(z) (kept, see [`Self::image`]),
    /// r = A p − measured, the loss ½·mean(r²), and ∂L/∂z = Aᵀ(r / m) · p(1 − p) (rounded as the
    /// host's `g * p * (1 - p)`) left in [`Self::gradient`]. Returns the loss (as
    /// [`Self::loss_and_gradient`] does, up to the order of its f64 sum) and max |∂L/∂z| (NaN
    /// when any entry is NaN), read together in one copy. Needs [`Self::set_measured`] first.
    pub fn sigmoid_loss_and_gradient_device(&mut self, z: &CudaView<f32>) -> Result<(f32, f32)> {
        let n_vox = self.n_voxels();
        self.check_len("the network outputs", z.len(), n_vox)?;
        if self.measured.is_none() {
            return Err(Error::Config("CUDA projector: loss_and_gradient before set_measured".into()));
        }
        self.rt.ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        let n_i = n_vox as i32;
        {
            let cfg = LaunchConfig {
                grid_dim: (blocks(n_vox, 256)?.min(1 << 20), 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // z and volume hold n_vox values (checked)
            launch!(self, "ct_sigmoid", cfg, z, &n_i, &mut self.volume)?;
        }
        self.launch_forward()?;
        let parts = self.launch_residual()?;
        self.launch_adjoint()?;
        let vparts = n_vox.div_ceil(RESIDUAL_THREADS as usize).clamp(1, RESIDUAL_BLOCKS);
        {
            let cfg = LaunchConfig {
                grid_dim: (vparts as u32, 1, 1),
                block_dim: (RESIDUAL_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // back, volume and grad hold n_vox values, partial_max RESIDUAL_BLOCKS ≥ vparts; 256
            // threads per block, as its block max needs
            launch!(
                self,
                "ct_chain_absmax",
                cfg,
                &self.back,
                &self.volume,
                &n_i,
                &mut self.grad,
                &mut self.partial_max
            )?;
        }
        {
            // partial holds RESIDUAL_BLOCKS ≥ parts
            let (parts_i, m) = (parts as i32, self.n_rays as f32 as f64);
            let mut out = self.loss_max.slice_mut(0..1);
            launch!(self, "ct_loss_total", ONE_BLOCK, &self.partial, &parts_i, &m, &mut out)?;
        }
        {
            // partial_max holds RESIDUAL_BLOCKS ≥ vparts
            let vparts_i = vparts as i32;
            let mut out = self.loss_max.slice_mut(1..2);
            launch!(self, "absmax_total", ONE_BLOCK, &self.partial_max, &vparts_i, &mut out)?;
        }
        let mut host = [0.0f64; 2];
        self.stream
            .memcpy_dtoh(&self.loss_max, &mut host)
            .map_err(|e| cuda_error("copying the loss from the device", e))?;
        self.stream.synchronize().map_err(|e| cuda_error("synchronising the projector's stream", e))?;
        Ok((host[0] as f32, host[1] as f32))
    }

    /// ∂L/∂z of the last [`Self::sigmoid_loss_and_gradient_device`], on the device.
    pub fn gradient(&self) -> CudaView<'_, f32> {
        self.grad.as_view()
    }

    /// The image σ(z) of the last [`Self::sigmoid_loss_and_gradient_device`], copied to `out`
    /// (for the PSNR curve; the resident step itself never copies it).
    pub fn image(&mut self, out: &mut [f32]) -> Result<()> {
        self.check_len("the image", out.len(), self.n_voxels())?;
        self.stream
            .memcpy_dtoh(&self.volume.slice(0..out.len()), out)
            .map_err(|e| cuda_error("copying the image from the device", e))?;
        self.stream.synchronize().map_err(|e| cuda_error("synchronising the projector's stream", e))
    }

    /// resid = (rays − measured) / m and the loss's f64 partial sums (½ r² per block) in
    /// `partial`; returns how many partials.
    fn launch_residual(&mut self) -> Result<usize> {
        let Some(measured) = &self.measured else {
            return Err(Error::Config("CUDA projector: loss_and_gradient before set_measured".into()));
        };
        let n = self.n_rays as i32;
        let m = self.n_rays as f32;
        let parts = self.n_rays.div_ceil(RESIDUAL_THREADS as usize).clamp(1, RESIDUAL_BLOCKS);
        let cfg = LaunchConfig {
            grid_dim: (parts as u32, 1, 1),
            block_dim: (RESIDUAL_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // rays, measured and resid hold n values, partial holds RESIDUAL_BLOCKS ≥ parts
        launch!(self, "ct_residual", cfg, &self.rays, measured, &n, &m, &mut self.resid, &mut self.partial)?;
        Ok(parts)
    }

    fn check_len(&self, what: &str, got: usize, want: usize) -> Result<()> {
        if got == want {
            Ok(())
        } else {
            Err(Error::Config(format!("CUDA projector: {what} has {got} values, the scan needs {want}")))
        }
    }

    fn upload_volume(&mut self, volume: &[f32]) -> Result<()> {
        self.stream
            .memcpy_htod(volume, &mut self.volume.slice_mut(0..volume.len()))
            .map_err(|e| cuda_error("copying the image to the device", e))
    }

    fn launch_forward(&mut self) -> Result<()> {
        let per_block = FORWARD_THREADS as usize / 32;
        let cfg = LaunchConfig {
            grid_dim: (blocks(self.n_rays, per_block)?, 1, 1),
            block_dim: (FORWARD_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let n = self.n_rays as i32;
        let [nx, ny, nz] = self.voxels;
        // seg_a/seg_b hold 4·n_rays floats, volume nx·ny·nz, rays n_rays; every sample index is
        // bounds-checked in the kernel
        launch!(
            self,
            "ct_forward",
            cfg,
            &self.seg_a,
            &self.seg_b,
            &n,
            &self.dims,
            &nx,
            &ny,
            &nz,
            &self.volume,
            &mut self.rays
        )
    }

    /// back = Aᵀ resid.
    fn launch_adjoint(&mut self) -> Result<()> {
        let n_vox = self.n_voxels();
        let cfg = LaunchConfig {
            grid_dim: (blocks(n_vox, ADJOINT_THREADS as usize)?, 1, 1),
            block_dim: (ADJOINT_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let [nx, ny, nz] = self.voxels;
        let [nu, nv] = self.det;
        // rays are indexed (view·nv + iv)·nu + iu < n_rays with view < n_views, iv < nv, iu < nu;
        // back holds nx·ny·nz values
        launch!(
            self,
            "ct_adjoint",
            cfg,
            &self.seg_a,
            &self.seg_b,
            &self.resid,
            &self.views,
            &self.geo,
            &self.n_views,
            &nu,
            &nv,
            &self.dims,
            &nx,
            &ny,
            &nz,
            &mut self.back
        )
    }

    fn download_rays(&mut self, out: &mut [f32]) -> Result<()> {
        self.stream
            .memcpy_dtoh(&self.rays.slice(0..out.len()), out)
            .map_err(|e| cuda_error("copying projections from the device", e))?;
        self.stream.synchronize().map_err(|e| cuda_error("synchronising the projector's stream", e))
    }

    fn download_back(&mut self, out: &mut [f32]) -> Result<()> {
        self.stream
            .memcpy_dtoh(&self.back.slice(0..out.len()), out)
            .map_err(|e| cuda_error("copying the back-projection from the device", e))?;
        self.stream.synchronize().map_err(|e| cuda_error("synchronising the projector's stream", e))
    }
}

#[cfg(test)]
mod tests;
