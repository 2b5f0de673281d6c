//! [`GpuKspaceOperator`]: the MRI job's masked 3-D Fourier operator on the device, through cuFFT.
//!
//! It computes exactly what [`MaskedFft`] computes on the host (`src/operator/fft.rs`), with the
//! same conventions: `F` unnormalised (`Fᴴ F = N·I`), volumes x fastest, k-space unshifted, the
//! loss `L = ½·Σ_k |M (F f − y)|² / N` over all N coefficients, and `∂L/∂f = Re(Fᴴ M (F f − y)) / N`.
//! The transforms are cuFFT's double-precision complex ones (Z2Z), like the host's f64 `rustfft`,
//! so the two agree to rounding (about 1e-12 relative in the loss, last-ulp in the f32 gradient).
//! At the paper's 96³ grid the transforms are a few hundredths of the network's step on any card,
//! so there is nothing to gain from single precision.
//!
//! The mask and the measured k-space stay on the device. Per step the raw network outputs `z`
//! go up (n f32), the sigmoid, the forward transform, the masked residual, the loss (partial sums
//! in a fixed order, no atomics), the adjoint transform and the chain rule through the sigmoid
//! run on the device, and `∂L/∂z` comes back (n f32) with the loss (one f64).
//!
//! Everything is on the operator's stream on the process-wide [`Runtime`]'s context: its own
//! ([`GpuKspaceOperator::new`]), where the network's backend has another and the two meet only
//! through host memory; or the backend's ([`GpuKspaceOperator::on_stream`]), for the
//! device-resident step ([`GpuKspaceOperator::sigmoid_loss_and_gradient_device`]): `z` is read
//! where the backend's forward left it, `∂L/∂z` stays on the device for the backend's backward,
//! and only the loss and max |∂L/∂z| (two f64) come back.
//!
//! `libcufft` is loaded at run time (cudarc's dynamic loading) and may be missing where the
//! driver, NVRTC and cuBLAS are present; [`GpuKspaceOperator::new`] then says why, and never
//! panics (a panic inside cudarc, a missing symbol say, is caught and reported), so the MRI job
//! falls back to the host's `rustfft`.

use crate::backend::cuda::{cuda_error, grid, panic_message, Runtime, ONE_BLOCK, THREADS};
use crate::operator::fft::{MaskedFft, C64};
use cudarc::cufft::{sys as fft_sys, CudaFft, FftDirection};
use cudarc::driver::{CudaSlice, CudaStream, CudaView, LaunchConfig, PushKernelArg};
use rustfft::num_complex::Complex;
use std::sync::Arc;

/// Blocks of the residual kernel: at most this many f64 partial sums of the loss.
const LOSS_BLOCKS: usize = 1024;

/// Whether libcufft can be loaded (cudarc's check, which never panics).
pub fn cufft_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { fft_sys::is_culib_present() }
}

/// `A = M ⊙ F` on the device, with the measured k-space `y` kept there (see the module docs).
pub struct GpuKspaceOperator {
    rt: Arc<Runtime>,
    stream: Arc<CudaStream>,
    /// None when every axis has length 1 (the transform is the identity).
    plan: Option<CudaFft>,
    dims: [usize; 3],
    n: usize,
    /// 1 where a coefficient is measured (unshifted).
    mask: CudaSlice<u8>,
    /// The measured coefficients, unshifted.
    kspace: CudaSlice<fft_sys::double2>,
    /// The working volume / k-space.
    x: CudaSlice<fft_sys::double2>,
    /// The network outputs (or the field) as uploaded.
    input: CudaSlice<f32>,
    /// The field p the loss was taken at (σ(z) when the sigmoid is fused).
    p: CudaSlice<f32>,
    grad: CudaSlice<f32>,
    partial: CudaSlice<f64>,
    /// Max |grad| per block (the device-resident step).
    partial_max: CudaSlice<f32>,
    /// [loss, max |grad|]: the loss of either step, and the device-resident step reads both
    /// together.
    loss_max: CudaSlice<f64>,
    parts: usize,
}

impl GpuKspaceOperator {
    /// Moves `op`'s mask and the measured k-space `y` (unshifted, as [`MaskedFft`] takes it) to
    /// the device and plans the transform. `Err` says why the device cannot do it (no cuFFT, no
    /// CUDA, a failed plan), for the log; never panics.
    pub fn new(op: &MaskedFft, y: &[C64]) -> Result<Self, String> {
        Self::make(op, y, None)
    }

    /// [`Self::new`] on a given stream of the process's context (the CUDA backend's,
    /// [`crate::backend::cuda::CudaBackend::stream`]), for [`Self::sigmoid_loss_and_gradient_device`].
    pub fn on_stream(op: &MaskedFft, y: &[C64], stream: Arc<CudaStream>) -> Result<Self, String> {
        Self::make(op, y, Some(stream))
    }

    fn make(op: &MaskedFft, y: &[C64], stream: Option<Arc<CudaStream>>) -> Result<Self, String> {
        let rt = crate::backend::cuda::runtime().map_err(|reason| format!("CUDA is not usable: {reason}"))?;
        if !cufft_present() {
            return Err("no cuFFT (libcufft.so.12 cannot be loaded; it ships with the CUDA toolkit)".into());
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::build(rt, op, y, stream))) {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(p) => Err(format!("cuFFT panicked: {}", panic_message(&*p))),
        }
    }

    fn build(
        rt: Arc<Runtime>,
        op: &MaskedFft,
        y: &[C64],
        stream: Option<Arc<CudaStream>>,
    ) -> crate::Result<Self> {
        let dims = op.dims();
        let n: usize = dims.iter().product();
        if n == 0 || n > i32::MAX as usize {
            return Err(crate::Error::Config(format!("a {dims:?} grid is out of range for cuFFT")));
        }
        if op.mask.len() != n || y.len() != n {
            return Err(crate::Error::Config(format!(
                "k-space operator: a mask of {} and k-space of {} entries for a {dims:?} grid",
                op.mask.len(),
                y.len()
            )));
        }
        rt.ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        let stream = match stream {
            Some(s) => s,
            None => rt.ctx.new_stream().map_err(|e| cuda_error("creating a stream", e))?,
        };
        // cuFFT is row-major (last axis fastest): our x-fastest volume is [nz][ny][nx]. Axes of
        // length 1 are dropped (their DFT is the identity), which leaves the layout unchanged.
        let shape: Vec<i32> = dims.iter().rev().filter(|&&d| d > 1).map(|&d| d as i32).collect();
        let plan = if shape.is_empty() {
            None
        } else {
            let n_i = n as i32;
            let plan = CudaFft::plan_many(
                &shape,
                None,
                1,
                n_i,
                None,
                1,
                n_i,
                fft_sys::cufftType::CUFFT_Z2Z,
                1,
                stream.clone(),
            )
            .map_err(|e| cuda_error(&format!("planning a {dims:?} cuFFT Z2Z transform"), e))?;
            Some(plan)
        };
        let alloc_err = |what: &str| {
            let what = what.to_string();
            move |e| cuda_error(&format!("allocating {what}"), e)
        };
        let mask_u8: Vec<u8> = op.mask.iter().map(|&m| u8::from(m)).collect();
        let mask = stream.clone_htod(&mask_u8).map_err(alloc_err("the mask"))?;
        let y_dev: Vec<fft_sys::double2> = y.iter().map(|c| fft_sys::double2 { x: c.re, y: c.im }).collect();
        let kspace = stream.clone_htod(&y_dev).map_err(alloc_err("the k-space"))?;
        let parts = n.div_ceil(THREADS as usize).clamp(1, LOSS_BLOCKS);
        let mut me = GpuKspaceOperator {
            x: stream.alloc_zeros(n).map_err(alloc_err("the work volume"))?,
            input: stream.alloc_zeros(n).map_err(alloc_err("the input"))?,
            p: stream.alloc_zeros(n).map_err(alloc_err("the field"))?,
            grad: stream.alloc_zeros(n).map_err(alloc_err("the gradient"))?,
            partial: stream.alloc_zeros(parts).map_err(alloc_err("the loss partials"))?,
            partial_max: stream.alloc_zeros(parts).map_err(alloc_err("the gradient maxima"))?,
            loss_max: stream.alloc_zeros(2).map_err(alloc_err("the loss"))?,
            parts,
            rt,
            stream,
            plan,
            dims,
            n,
            mask,
            kspace,
        };
        // One round trip on zeros: loads every cuFFT entry point now (inside `new`'s
        // catch_unwind), and fails here rather than in the first training step.
        me.transform(FftDirection::Forward)?;
        me.transform(FftDirection::Inverse)?;
        me.stream.synchronize().map_err(|e| cuda_error("the first cuFFT transform", e))?;
        Ok(me)
    }

    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// For the log: "cuFFT (f64) on NVIDIA H200".
    pub fn describe(&self) -> String {
        format!("cuFFT (complex f64, {:?} grid) on {}", self.dims, self.rt.device_name)
    }

    /// In place on `self.x`: `F` (forward) or `Fᴴ` (inverse), both unnormalised.
    fn transform(&mut self, direction: FftDirection) -> crate::Result<()> {
        let Some(plan) = &self.plan else { return Ok(()) };
        // exec_z2z takes two &mut; in place is what we want, and cuFFT supports it: pass the
        // raw pointers through cudarc's `result` API.
        use cudarc::driver::DevicePtrMut;
        let (ptr, _record) = self.x.device_ptr_mut(&self.stream);
        let ptr = ptr as *mut fft_sys::cufftDoubleComplex;
        // SAFETY: `ptr` is `self.x`, n complex doubles, the size the plan was made for; the plan
        // runs on `self.stream`, the stream every other use of `self.x` is ordered on.
        unsafe { cudarc::cufft::result::exec_z2z(plan.handle(), ptr, ptr, direction as i32) }
            .map_err(|e| cuda_error("cufftExecZ2Z", e))
    }

    fn check_field(&self, len: usize) -> crate::Result<()> {
        if len != self.n {
            return Err(crate::Error::Config(format!(
                "k-space operator: a field of {len} values for a {:?} grid",
                self.dims
            )));
        }
        Ok(())
    }

    /// One block of [`THREADS`] per loss partial.
    fn parts_cfg(&self) -> LaunchConfig {
        LaunchConfig { grid_dim: (self.parts as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
    }

    /// With `F x` in `self.x`: the masked residual in place and the loss ½·Σ|r|² / N into
    /// `loss_max[0]`.
    fn residual_and_loss(&mut self) -> crate::Result<()> {
        let (n_i, cfg) = (self.n as i32, self.parts_cfg());
        launch!(
            self,
            "kspace_residual",
            cfg,
            &mut self.x,
            &self.kspace,
            &self.mask,
            &n_i,
            &mut self.partial
        )?;
        let (parts_i, n_f) = (self.parts as i32, self.n as f64);
        let mut out = self.loss_max.slice_mut(0..1);
        launch!(self, "kspace_loss_total", ONE_BLOCK, &self.partial, &parts_i, &n_f, &mut out)
    }

    fn upload_field(&mut self, v: &[f32], apply_sigmoid: bool) -> crate::Result<()> {
        self.check_field(v.len())?;
        self.rt.ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        self.stream.memcpy_htod(v, &mut self.input).map_err(|e| cuda_error("copying to the device", e))?;
        let (n_i, sig) = (self.n as i32, i32::from(apply_sigmoid));
        launch!(self, "kspace_pack", grid(self.n), &self.input, &n_i, &sig, &mut self.p, &mut self.x)
    }

    fn loss_and_gradient_inner(&mut self, v: &[f32], grad: &mut [f32], sigmoid: bool) -> crate::Result<f64> {
        if grad.len() != self.n {
            return Err(crate::Error::Config("k-space operator: gradient buffer of the wrong size".into()));
        }
        self.upload_field(v, sigmoid)?;
        self.transform(FftDirection::Forward)?;
        self.residual_and_loss()?;
        self.transform(FftDirection::Inverse)?; // the residual is masked already: Fᴴ M r
        let (n_i, n_f, chain) = (self.n as i32, self.n as f64, i32::from(sigmoid));
        launch!(self, "kspace_gradient", grid(self.n), &self.x, &self.p, &n_i, &n_f, &chain, &mut self.grad)?;
        let mut loss = vec![0.0f64];
        self.stream.memcpy_dtoh(&self.grad, grad).map_err(|e| cuda_error("copying from the device", e))?;
        self.stream
            .memcpy_dtoh(&self.loss_max.slice(0..1), &mut loss)
            .map_err(|e| cuda_error("copying from the device", e))?;
        self.stream.synchronize().map_err(|e| cuda_error("synchronising the stream", e))?;
        Ok(loss[0])
    }

    /// [`MaskedFft::loss_and_gradient`] on the device: `L = ½·Σ_k |M F f − M y|² / N`, and
    /// `grad[n] = ∂L/∂f_n`.
    pub fn loss_and_gradient(&mut self, f: &[f32], grad: &mut [f32]) -> crate::Result<f64> {
        self.loss_and_gradient_inner(f, grad, false)
    }

    /// The MRI training step's part after the network: `p = σ(z)`, then the loss at `p` as
    /// [`Self::loss_and_gradient`], and `grad[n] = ∂L/∂z_n = ∂L/∂p_n · p_n (1 − p_n)`, with the
    /// host's rounding order (`(∂L/∂p as f32) · (p·(1 − p))`).
    pub fn sigmoid_loss_and_gradient(&mut self, z: &[f32], grad: &mut [f32]) -> crate::Result<f64> {
        self.loss_and_gradient_inner(z, grad, true)
    }

    /// The device-resident form of [`Self::sigmoid_loss_and_gradient`]: `z` (n f32) is already
    /// on the device, ordered on this operator's stream (make it with [`Self::on_stream`] on the
    /// backend's stream); `∂L/∂z` is left in [`Self::gradient`]. Returns the loss and max |∂L/∂z|
    /// (NaN when any entry is NaN), read together in one copy: the same values, bit for bit, as
    /// [`Self::sigmoid_loss_and_gradient`] on the same `z` (the same kernels, and the max is exact).
    pub fn sigmoid_loss_and_gradient_device(&mut self, z: &CudaView<f32>) -> crate::Result<(f64, f32)> {
        self.check_field(z.len())?;
        self.rt.ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        let (n_i, sig) = (self.n as i32, 1i32);
        launch!(self, "kspace_pack", grid(self.n), z, &n_i, &sig, &mut self.p, &mut self.x)?;
        self.transform(FftDirection::Forward)?;
        self.residual_and_loss()?;
        self.transform(FftDirection::Inverse)?;
        let (parts_i, n_f, cfg) = (self.parts as i32, self.n as f64, self.parts_cfg());
        launch!(
            self,
            "kspace_gradient_absmax",
            cfg,
            &self.x,
            &self.p,
            &n_i,
            &n_f,
            &sig,
            &mut self.grad,
            &mut self.partial_max
        )?;
        {
            let mut out = self.loss_max.slice_mut(1..2);
            launch!(self, "absmax_total", ONE_BLOCK, &self.partial_max, &parts_i, &mut out)?;
        }
        let mut host = [0.0f64; 2];
        self.stream
            .memcpy_dtoh(&self.loss_max, &mut host)
            .map_err(|e| cuda_error("copying the loss from the device", e))?;
        self.stream.synchronize().map_err(|e| cuda_error("synchronising the stream", e))?;
        Ok((host[0], host[1] as f32))
    }

    /// ∂L/∂z of the last [`Self::sigmoid_loss_and_gradient_device`], on the device (n f32).
    pub fn gradient(&self) -> CudaView<'_, f32> {
        self.grad.as_view()
    }

    fn upload_complex(&mut self, v: &[C64]) -> crate::Result<()> {
        if v.len() != self.n {
            return Err(crate::Error::Config(format!(
                "k-space operator: {} values for a {:?} grid",
                v.len(),
                self.dims
            )));
        }
        self.rt.ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        let host: Vec<fft_sys::double2> = v.iter().map(|c| fft_sys::double2 { x: c.re, y: c.im }).collect();
        self.stream.memcpy_htod(&host, &mut self.x).map_err(|e| cuda_error("copying to the device", e))
    }

    fn download_complex(&mut self) -> crate::Result<Vec<C64>> {
        let mut host = vec![fft_sys::double2 { x: 0.0, y: 0.0 }; self.n];
        self.stream.memcpy_dtoh(&self.x, &mut host).map_err(|e| cuda_error("copying from the device", e))?;
        self.stream.synchronize().map_err(|e| cuda_error("synchronising the stream", e))?;
        Ok(host.iter().map(|c| Complex::new(c.x, c.y)).collect())
    }

    fn mask_x(&mut self) -> crate::Result<()> {
        let n_i = self.n as i32;
        launch!(self, "kspace_mask", grid(self.n), &mut self.x, &self.mask, &n_i)
    }

    /// `y = M ⊙ F x` ([`MaskedFft::apply`]).
    pub fn apply(&mut self, x: &[C64]) -> crate::Result<Vec<C64>> {
        self.upload_complex(x)?;
        self.transform(FftDirection::Forward)?;
        self.mask_x()?;
        self.download_complex()
    }

    /// `x = Fᴴ (M ⊙ y)` ([`MaskedFft::adjoint`]).
    pub fn adjoint(&mut self, y: &[C64]) -> crate::Result<Vec<C64>> {
        self.upload_complex(y)?;
        self.mask_x()?;
        self.transform(FftDirection::Inverse)?;
        self.download_complex()
    }
}
