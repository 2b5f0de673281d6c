// The masked k-space operator of the MRI job on the device (src/backend/cuda/fft.rs), around
// cuFFT's double-precision complex transforms. The CPU reference is src/operator/fft.rs
// `MaskedFft::loss_and_gradient`; these kernels follow its conventions and its order of rounding:
//
//   p = σ(z) (or p = z)    x = p + 0i    x ← F x (cuFFT, unnormalised)
//   r = M ⊙ (x − y)        L = ½ Σ|r|² / N    x ← Fᴴ r (cuFFT inverse, unnormalised)
//   grad = (float)(Re x / N), times p(1 − p) when the sigmoid is fused.
//
// Complex values are double2 (re, im), x fastest, k-space unshifted, as on the host.
// The loss kernels assume 256 threads per block and a fixed grid, so the sum is always added in
// the same order (no atomics): the same inputs give the same loss bit for bit.

// p[i] = σ(v[i]) (apply_sigmoid != 0) or v[i]; x[i] = (p[i], 0).
extern "C" __global__ void kspace_pack(const float* __restrict__ v, int n, int apply_sigmoid,
                                       float* __restrict__ p, double2* __restrict__ x) {
    FOR_EACH(i, n) {
        float pi = apply_sigmoid ? sigmoidf_stable(v[i]) : v[i];
        p[i] = pi;
        double2 c;
        c.x = (double)pi;
        c.y = 0.0;
        x[i] = c;
    }
}

// r = x − y where mask[i] != 0, else 0 (in place in x); Σ|r|² per block into partial[blockIdx.x].
extern "C" __global__ void kspace_residual(double2* __restrict__ x, const double2* __restrict__ y,
                                           const unsigned char* __restrict__ mask, int n,
                                           double* __restrict__ partial) {
    double acc = 0.0;
    FOR_EACH(i, n) {
        double2 r;
        if (mask[i]) {
            double2 a = x[i], b = y[i];
            r.x = a.x - b.x;
            r.y = a.y - b.y;
        } else {
            r.x = 0.0;
            r.y = 0.0;
        }
        x[i] = r;
        acc += r.x * r.x + r.y * r.y;
    }
    block_sum_to(acc, partial + blockIdx.x);
}

// out[0] = ½ (Σ partial) / n_voxels. One block of 256 threads.
extern "C" __global__ void kspace_loss_total(const double* __restrict__ partial, int parts, double n_voxels,
                                             double* __restrict__ out) {
    double total = block_sum_partials(partial, parts);
    if (threadIdx.x == 0) out[0] = 0.5 * total / n_voxels;
}

// (float)(Re x[i] / n_voxels), times p(1 − p) when chain_sigmoid != 0.
__device__ __forceinline__ float kspace_grad_at(const double2* __restrict__ x, const float* __restrict__ p,
                                                long long i, double n_voxels, int chain_sigmoid) {
    float g = (float)(x[i].x / n_voxels);
    if (chain_sigmoid) {
        float pi = p[i];
        g *= pi * (1.0f - pi);
    }
    return g;
}

// grad[i] = kspace_grad_at(i).
extern "C" __global__ void kspace_gradient(const double2* __restrict__ x, const float* __restrict__ p, int n,
                                           double n_voxels, int chain_sigmoid, float* __restrict__ grad) {
    FOR_EACH(i, n) { grad[i] = kspace_grad_at(x, p, i, n_voxels, chain_sigmoid); }
}

// kspace_gradient, and the largest |grad| (NaN wins) of the block's grid-stride share into
// partial_max[blockIdx.x]. Launch with 256 threads per block (the device-resident step).
extern "C" __global__ void kspace_gradient_absmax(const double2* __restrict__ x, const float* __restrict__ p,
                                                  int n, double n_voxels, int chain_sigmoid,
                                                  float* __restrict__ grad, float* __restrict__ partial_max) {
    float m = 0.0f;
    FOR_EACH(i, n) {
        float g = kspace_grad_at(x, p, i, n_voxels, chain_sigmoid);
        grad[i] = g;
        m = absmax_keep_nan(m, g);
    }
    block_absmax_to(m, partial_max + blockIdx.x);
}

// x[i] = 0 where mask[i] == 0.
extern "C" __global__ void kspace_mask(double2* __restrict__ x, const unsigned char* __restrict__ mask, int n) {
    FOR_EACH(i, n) {
        if (!mask[i]) {
            double2 z;
            z.x = 0.0;
            z.y = 0.0;
            x[i] = z;
        }
    }
}
