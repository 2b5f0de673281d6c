//! cuBLASLt products with a fused bias + ReLU epilogue, for the fp16 forward layers:
//! `Zᵀ (out×n, col-major fp16) = relu(op_T(W) · Aᵀ + b)` in one kernel, fp16 in and out, fp32
//! accumulation, the bias an fp16 vector (the fp16 copy of the parameters). A plan (descriptor,
//! layouts, the heuristic's algorithm) is made once per shape and kept.
//!
//! cuBLASLt is loaded at run time like everything else of CUDA; when it cannot be loaded or a
//! shape has no algorithm, the caller falls back to cuBLAS plus `bias_relu_h` and says so.

use cudarc::cublaslt::{result as lt, sys};
use cudarc::driver::{CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
use half::f16;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

/// Alignment in bytes that every buffer and column start must have.
const ALIGN: usize = 16;

/// One product shape: descriptor, layouts and algorithm.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    c: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: made by create_* below and destroyed only here; errors are ignored on the way out.
        unsafe {
            let _ = lt::destroy_matrix_layout(self.a);
            let _ = lt::destroy_matrix_layout(self.b);
            let _ = lt::destroy_matrix_layout(self.c);
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// (m, n, k)
type PlanKey = (usize, usize, usize);

/// A cuBLASLt handle on one stream with its workspace and plans.
pub struct Lt {
    handle: sys::cublasLtHandle_t,
    stream: Arc<CudaStream>,
    workspace: CudaSlice<u8>,
    /// (m, n, k) → plan, or the reason there is none for that shape.
    plans: RefCell<HashMap<PlanKey, Result<Plan, String>>>,
}

// SAFETY: the handle and the plans' descriptors are used only through `&self` methods on the
// owning backend's thread (the backend is not Sync: the plans sit in a RefCell); cuBLASLt
// handles may move between threads.
unsafe impl Send for Lt {}

impl Drop for Lt {
    fn drop(&mut self) {
        self.plans.borrow_mut().clear();
        // SAFETY: the handle was made by create_handle and is destroyed once.
        unsafe {
            let _ = lt::destroy_handle(self.handle);
        }
    }
}

fn err(what: &str, e: impl std::fmt::Debug) -> String {
    format!("cuBLASLt {what}: {e:?}")
}

impl Lt {
    /// A handle on `stream`, or why cuBLASLt cannot be used (never panics).
    pub fn new(stream: Arc<CudaStream>, sm_major: i32) -> Result<Self, String> {
        // SAFETY: only tries to dlopen the library by its usual names.
        if !unsafe { sys::is_culib_present() } {
            return Err("cuBLASLt (libcublasLt.so.13) cannot be loaded".into());
        }
        let handle = std::panic::catch_unwind(lt::create_handle)
            .map_err(|_| {
                "cuBLASLt: creating a handle panicked (a symbol missing from the library?)".to_string()
            })?
            .map_err(|e| err("creating a handle", e))?;
        // NVIDIA's recommendation: 32 MiB on Hopper, 4 MiB before
        let size = if sm_major >= 9 { 32 << 20 } else { 4 << 20 };
        let workspace = match stream.alloc_zeros::<u8>(size) {
            Ok(w) => w,
            Err(e) => {
                // SAFETY: the handle was just made.
                unsafe {
                    let _ = lt::destroy_handle(handle);
                }
                return Err(err("allocating its workspace", e));
            }
        };
        Ok(Lt { handle, stream, workspace, plans: RefCell::new(HashMap::new()) })
    }

    fn plan(&self, m: usize, n: usize, k: usize) -> Result<Plan, String> {
        use sys::cublasLtMatmulDescAttributes_t as D;
        let h16 = sys::cudaDataType_t::CUDA_R_16F;
        let desc = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType_t::CUDA_R_32F,
        )
        .map_err(|e| err("creating a descriptor", e))?;
        let mk = |rows: usize, cols: usize, ld: usize| {
            lt::create_matrix_layout(h16, rows as u64, cols as u64, ld as i64)
                .map_err(|e| err("creating a layout", e))
        };
        // A is W viewed column-major in×out (k×m), transposed; B is Aᵀ (k×n); C is Zᵀ (m×n)
        let (a, b, c) = (mk(k, m, k), mk(k, n, k), mk(m, n, m));
        let (a, b, c) = match (a, b, c) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (a, b, c) => {
                // SAFETY: destroys only what was made.
                unsafe {
                    for l in [a, b, c].into_iter().flatten() {
                        let _ = lt::destroy_matrix_layout(l);
                    }
                    let _ = lt::destroy_matmul_desc(desc);
                }
                return Err("cuBLASLt: creating the layouts failed".into());
            }
        };
        let mut plan = Plan { desc, a, b, c, algo: unsafe { std::mem::zeroed() } };
        let trans_a = cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_T;
        let trans_b = cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N;
        let epilogue = sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_RELU_BIAS;
        // SAFETY: each buffer is a live local of the size given.
        unsafe {
            let set = |attr: D, p: *const c_void, size: usize| {
                lt::set_matmul_desc_attribute(desc, attr, p, size).map_err(|e| err("setting an attribute", e))
            };
            set(
                D::CUBLASLT_MATMUL_DESC_TRANSA,
                (&trans_a) as *const _ as *const c_void,
                std::mem::size_of_val(&trans_a),
            )?;
            set(
                D::CUBLASLT_MATMUL_DESC_TRANSB,
                (&trans_b) as *const _ as *const c_void,
                std::mem::size_of_val(&trans_b),
            )?;
            set(
                D::CUBLASLT_MATMUL_DESC_EPILOGUE,
                (&epilogue) as *const _ as *const c_void,
                std::mem::size_of_val(&epilogue),
            )?;
            let pref = lt::create_matmul_pref().map_err(|e| err("creating a preference", e))?;
            let ws = self.workspace.len();
            let r = lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws) as *const usize as *const c_void,
                std::mem::size_of::<usize>(),
            )
            .map_err(|e| err("setting the workspace size", e))
            .and_then(|_| {
                // only algorithms that work with 16-byte aligned buffers (the default allows
                // algorithms that need 256): matmul_bias checks the pointers against this
                use sys::cublasLtMatmulPreferenceAttributes_t as P;
                for attr in [
                    P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                    P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                    P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                ] {
                    let align: u32 = ALIGN as u32;
                    lt::set_matmul_pref_attribute(
                        pref,
                        attr,
                        (&align) as *const u32 as *const c_void,
                        std::mem::size_of::<u32>(),
                    )
                    .map_err(|e| err("setting an alignment", e))?;
                }
                Ok(())
            })
            .and_then(|_| {
                lt::get_matmul_algo_heuristic(self.handle, desc, a, b, c, c, pref)
                    .map_err(|e| err(&format!("finding an algorithm for {m}×{n}×{k} (ReluBias)"), e))
            });
            let _ = lt::destroy_matmul_pref(pref);
            plan.algo = r?.algo;
        }
        Ok(plan)
    }

    /// `C (m×n col-major fp16) = relu(op_T(A) · B + bias)` with A k×m (ld k), B k×n (ld k), bias
    /// m entries. Err (with the reason) when this shape has no cuBLASLt algorithm; the caller
    /// then uses cuBLAS and its own epilogue. Buffers smaller than the product are an error.
    pub fn matmul_bias_relu(
        &self,
        (m, n, k): (usize, usize, usize),
        a: &CudaView<f16>,
        b: &CudaView<f16>,
        bias: &CudaView<f16>,
        c: &mut CudaViewMut<f16>,
    ) -> Result<(), String> {
        if a.len() < k * m || b.len() < k * n || bias.len() < m || c.len() < m * n {
            return Err("cuBLASLt: buffers smaller than the product".into());
        }
        // every column of A, B and C starts 16-byte aligned (the plans' algorithms assume it)
        if m % 8 != 0 || k % 8 != 0 {
            return Err(format!("cuBLASLt: {m}×{k} weights are not a multiple of 8 halves wide"));
        }
        let mut plans = self.plans.borrow_mut();
        let plan = plans.entry((m, n, k)).or_insert_with(|| self.plan(m, n, k));
        let plan = plan.as_ref().map_err(|e| e.clone())?;
        let s = &self.stream;
        let (a_ptr, _ga) = a.device_ptr(s);
        let (b_ptr, _gb) = b.device_ptr(s);
        let (bias_ptr, _gbias) = bias.device_ptr(s);
        let (c_ptr, _gc) = c.device_ptr_mut(s);
        let (w_ptr, _gw) = self.workspace.device_ptr(s);
        if [a_ptr, b_ptr, bias_ptr, c_ptr].iter().any(|&p| p % ALIGN as u64 != 0) {
            return Err("cuBLASLt: a buffer is not 16-byte aligned".into());
        }
        let (alpha, beta) = (1.0f32, 0.0f32);
        use sys::cublasLtMatmulDescAttributes_t as D;
        // SAFETY: the plan's descriptor and layouts are live; the pointers are device buffers of
        // at least the sizes checked above, all used on this handle's stream.
        unsafe {
            lt::set_matmul_desc_attribute(
                plan.desc,
                D::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                (&bias_ptr) as *const u64 as *const c_void,
                8,
            )
            .map_err(|e| err("setting the bias", e))?;
            lt::matmul(
                self.handle,
                plan.desc,
                (&alpha) as *const f32 as *const c_void,
                (&beta) as *const f32 as *const c_void,
                a_ptr as *const c_void,
                plan.a,
                b_ptr as *const c_void,
                plan.b,
                c_ptr as *const c_void,
                plan.c,
                c_ptr as *mut c_void,
                plan.c,
                &plan.algo,
                w_ptr as *mut c_void,
                self.workspace.len(),
                s.cu_stream() as *mut _,
            )
            .map_err(|e| err("cublasLtMatmul", e))
        }
    }
}
