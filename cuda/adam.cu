// Adam with bias correction (src/train/adam.rs). c1 = 1/(1 − β1^t) and c2 = 1/(1 − β2^t) come
// from the host, computed exactly as the CPU backend computes them (src/backend/cuda/adam.rs).
// The fp16 variants also write the fp16 copy of the weights in the same pass.
#include <cuda_fp16.h>

// One parameter's Adam update (src/train/adam.rs), shared by the three kernels below; returns
// the new value.
__device__ __forceinline__ float adam_update(float* __restrict__ p, const float* __restrict__ g,
                                             float* __restrict__ m, float* __restrict__ v, long long i, float lr,
                                             float b1, float b2, float eps, float c1, float c2) {
    float gi = g[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float pi = p[i] - lr * (mi * c1) / (sqrtf(vi * c2) + eps);
    p[i] = pi;
    return pi;
}

extern "C" __global__ void adam_step(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                     float* __restrict__ v, long long n, float lr, float b1, float b2, float eps,
                                     float c1, float c2) {
    FOR_EACH(i, n) { adam_update(p, g, m, v, i, lr, b1, b2, eps, c1, c2); }
}

// adam_step (the same adam_update) that also writes the fp16 copy of the updated
// weights, so no separate conversion pass over all parameters follows.
extern "C" __global__ void adam_step_h(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                       float* __restrict__ v, long long n, float lr, float b1, float b2, float eps,
                                       float c1, float c2, __half* __restrict__ p16) {
    FOR_EACH(i, n) { p16[i] = __float2half_rn(adam_update(p, g, m, v, i, lr, b1, b2, eps, c1, c2)); }
}

// adam_step_h with lr, c1, c2 read from hyper[0..3]: the form a captured CUDA graph replays, the
// host writing the step's values into `hyper` before each launch. Same arithmetic.
extern "C" __global__ void adam_step_h_dev(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                           float* __restrict__ v, long long n, const float* __restrict__ hyper,
                                           float b1, float b2, float eps, __half* __restrict__ p16) {
    float lr = hyper[0], c1 = hyper[1], c2 = hyper[2];
    FOR_EACH(i, n) { p16[i] = __float2half_rn(adam_update(p, g, m, v, i, lr, b1, b2, eps, c1, c2)); }
}
