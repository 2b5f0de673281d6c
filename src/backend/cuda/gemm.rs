//! Matrix products: cuBLAS `gemmEx` for every product (fp32, or fp16 operands with fp32
//! accumulation on tensor cores), and cuBLASLt ([`lt`]) for the fp16 forward layers with bias and
//! ReLU fused into the epilogue. Row-major `Z = A·Wᵀ` and friends are the column-major transposes
//! (see [`super::mlp`]).

mod lt;

pub(super) use lt::Lt;

use super::buffers::Gpu;
use super::cuda_error;
use cudarc::cublas::{result as blas_result, sys as blas_sys};
use cudarc::driver::{CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
use half::f16;
use std::ffi::c_void;

/// An operand of a matrix product.
pub(super) enum Operand<'a> {
    F32(CudaView<'a, f32>),
    F16(CudaView<'a, f16>),
}

impl Operand<'_> {
    pub(super) fn len(&self) -> usize {
        match self {
            Operand::F32(v) => v.len(),
            Operand::F16(v) => v.len(),
        }
    }
}

/// The result of a matrix product.
pub(super) enum OutOperand<'a, 'b> {
    F32(&'a mut CudaViewMut<'b, f32>),
    F16(&'a mut CudaViewMut<'b, f16>),
}

impl OutOperand<'_, '_> {
    pub(super) fn len(&self) -> usize {
        match self {
            OutOperand::F32(v) => v.len(),
            OutOperand::F16(v) => v.len(),
        }
    }
}

impl Gpu {
    /// Column-major `C (m×n) = alpha · op(A) · op(B)` with fp32 C and accumulation, A and B both
    /// fp32 or both fp16 (tensor cores). Dimensions are checked against the buffers first, so
    /// cuBLAS cannot touch memory outside them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm(
        &self,
        tr: (bool, bool),
        mnk: (usize, usize, usize),
        alpha: f32,
        a: (Operand, usize),
        b: (Operand, usize),
        (c, ldc): (&mut CudaViewMut<f32>, usize),
    ) -> crate::Result<()> {
        self.gemm_to(tr, mnk, alpha, a, b, (OutOperand::F32(c), ldc))
    }

    /// [`Self::gemm`] with C fp32 or (fp16 A and B only) fp16; accumulation in fp32.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_to(
        &self,
        (ta, tb): (bool, bool),
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        (a, lda): (Operand, usize),
        (b, ldb): (Operand, usize),
        (mut c, ldc): (OutOperand, usize),
    ) -> crate::Result<()> {
        // elements a column-major rows×cols matrix with leading dimension ld spans
        let span = |rows: usize, cols: usize, ld: usize| (cols - 1) * ld + rows;
        let (ar, ac) = if ta { (k, m) } else { (m, k) };
        let (br, bc) = if tb { (n, k) } else { (k, n) };
        let ok = m > 0
            && n > 0
            && k > 0
            && lda >= ar
            && ldb >= br
            && ldc >= m
            && span(ar, ac, lda) <= a.len()
            && span(br, bc, ldb) <= b.len()
            && span(m, n, ldc) <= c.len()
            && [m, n, k, lda, ldb, ldc].iter().all(|&d| d <= i32::MAX as usize);
        if !ok {
            return Err(crate::Error::Config(format!(
                "CUDA gemm: {m}×{n}×{k} (lda {lda}, ldb {ldb}, ldc {ldc}) does not fit buffers of {}, {}, {}",
                a.len(),
                b.len(),
                c.len()
            )));
        }
        let op = |t: bool| {
            if t {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let beta = 0.0f32;
        let s = &self.stream;
        let (a_ptr, a_type, _a_sync) = match &a {
            Operand::F32(v) => {
                let (p, g) = v.device_ptr(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_32F, g)
            }
            Operand::F16(v) => {
                let (p, g) = v.device_ptr(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_16F, g)
            }
        };
        let (b_ptr, b_type, _b_sync) = match &b {
            Operand::F32(v) => {
                let (p, g) = v.device_ptr(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_32F, g)
            }
            Operand::F16(v) => {
                let (p, g) = v.device_ptr(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_16F, g)
            }
        };
        if a_type != b_type {
            return Err(crate::Error::Config("CUDA gemm: operands of different types".into()));
        }
        let (c_ptr, c_type, _c_sync) = match &mut c {
            OutOperand::F32(v) => {
                let (p, g) = v.device_ptr_mut(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_32F, g)
            }
            OutOperand::F16(v) => {
                if a_type != blas_sys::cudaDataType_t::CUDA_R_16F {
                    return Err(crate::Error::Config("CUDA gemm: fp16 output needs fp16 operands".into()));
                }
                let (p, g) = v.device_ptr_mut(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_16F, g)
            }
        };
        // SAFETY: the handle is live, the pointers are device allocations on this handle's stream,
        // and the extents were checked above. alpha and beta are host f32, as CUBLAS_COMPUTE_32F
        // requires with the default (host) pointer mode.
        unsafe {
            blas_result::gemm_ex(
                *self.blas.handle(),
                op(ta),
                op(tb),
                m as i32,
                n as i32,
                k as i32,
                (&alpha) as *const f32 as *const c_void,
                a_ptr as *const c_void,
                a_type,
                lda as i32,
                b_ptr as *const c_void,
                b_type,
                ldb as i32,
                (&beta) as *const f32 as *const c_void,
                c_ptr as *mut c_void,
                c_type,
                ldc as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| cuda_error("cublasGemmEx", e))
    }
}
