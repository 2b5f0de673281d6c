// The fp16 training path (src/backend/cuda/network.rs): hidden activations and ∂L/∂Z live only
// as fp16, so every element-wise pass reads and writes half the bytes.
//   forward:  encode → fp16 features; GEMM (fp16 in, fp32 accumulate, fp16 out) → bias_relu_h
//             in place (bias added in fp32, one rounding back to fp16)
//   backward: GEMM dA (fp16 out) → relu_mask_colsum_h in place, which also sums the masked
//             columns for the bias gradient of the layer below (fixed order, deterministic)
//   Adam:     adam_step_h writes the fp16 copy of the weights in the same pass
#include <cuda_fp16.h>

// fp32 → fp16 (round to nearest): the fp16 weight copy after a checkpoint is loaded, and the
// output layer's ∂L/∂Z.
extern "C" __global__ void f32_to_f16(const float* __restrict__ x, long long n, __half* __restrict__ out) {
    FOR_EACH(i, n) { out[i] = __float2half_rn(x[i]); }
}

// encode_fourier, writing the fp16 features directly: the same f32 value as encode_fourier
// rounded once (equals f32_to_f16 of the fp32 path's features bit for bit).
extern "C" __global__ void encode_fourier_h(const float* __restrict__ points, const float* __restrict__ b, int n,
                                            int d, int m, float scale, __half* __restrict__ out) {
    FOR_EACH(idx, (long long)n * m) {
        long long i;
        int k;
        float c, s;
        fourier_feature(points, b, d, m, scale, idx, &i, &k, &c, &s);
        __half* o = out + i * 2 * (long long)m;
        o[k] = __float2half_rn(c);
        o[m + k] = __float2half_rn(s);
    }
}

// encode_identity into fp16.
extern "C" __global__ void encode_identity_h(const float* __restrict__ points, long long len,
                                             __half* __restrict__ out) {
    FOR_EACH(i, len) { out[i] = __float2half_rn(2.0f * points[i] - 1.0f); }
}

// z (rows × cols fp16, row-major, cols even) += bias per column in fp32, ReLU when `relu`,
// rounded back to fp16 in place. Two columns per thread.
extern "C" __global__ void bias_relu_h(__half2* __restrict__ z, const float* __restrict__ bias, int rows, int cols,
                                       int relu) {
    int half_cols = cols >> 1;
    FOR_EACH(i, (long long)rows * half_cols) {
        int c = (int)(i % half_cols) * 2;
        float2 v = __half22float2(z[i]);
        v.x += bias[c];
        v.y += bias[c + 1];
        if (relu) {
            v.x = fmaxf(v.x, 0.0f);
            v.y = fmaxf(v.y, 0.0f);
        }
        z[i] = __floats2half2_rn(v.x, v.y);
    }
}

// ∂L/∂A (rows × cols fp16, cols even) through the ReLU of the layer below, in place: zero where
// the post-ReLU fp16 activation is not positive. Also the first pass of that layer's bias
// gradient: column sums of the masked values over blocks of `rows_per_part` rows, f32 within a
// thread (rows_per_part / 8 terms), f64 across the block's 8 rows of threads in a fixed order.
// Block (32, 8), grid (ceil(cols / 64), parts); writes partial[part * cols + col] (f64), which
// column_sums_final finishes. The order of every sum is fixed: results do not depend on timing.
extern "C" __global__ void relu_mask_colsum_h(__half2* __restrict__ grad, const __half2* __restrict__ act, int rows,
                                              int cols, int rows_per_part, double* __restrict__ partial) {
    __shared__ double acc[8][64];
    int half_cols = cols >> 1;
    int pair = blockIdx.x * 32 + threadIdx.x;
    int part = blockIdx.y;
    long long r0 = (long long)part * rows_per_part;
    long long r1 = min((long long)rows, r0 + rows_per_part);
    float sx = 0.0f, sy = 0.0f;
    if (pair < half_cols) {
        for (long long r = r0 + threadIdx.y; r < r1; r += 8) {
            long long i = r * half_cols + pair;
            float2 g = __half22float2(grad[i]);
            float2 a = __half22float2(act[i]);
            g.x = a.x > 0.0f ? g.x : 0.0f;
            g.y = a.y > 0.0f ? g.y : 0.0f;
            grad[i] = __floats2half2_rn(g.x, g.y);
            sx += g.x;
            sy += g.y;
        }
    }
    acc[threadIdx.y][2 * threadIdx.x] = (double)sx;
    acc[threadIdx.y][2 * threadIdx.x + 1] = (double)sy;
    __syncthreads();
    if (threadIdx.y == 0 && pair < half_cols) {
        double tx = 0.0, ty = 0.0;
        for (int j = 0; j < 8; ++j) {
            tx += acc[j][2 * threadIdx.x];
            ty += acc[j][2 * threadIdx.x + 1];
        }
        partial[(long long)part * cols + 2 * pair] = tx;
        partial[(long long)part * cols + 2 * pair + 1] = ty;
    }
}

// adam_step (cuda/adam.cu, the same adam_update) that also writes the fp16 copy of the updated
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

// mean_of_partials (cuda/loss.cu) writing out[*slot]: the loss slot of a graph-replayed step.
// One block of 256 threads.
extern "C" __global__ void mean_of_partials_slot(const double* __restrict__ partial, int parts, double inv_n,
                                                 const int* __restrict__ slot, float* __restrict__ out) {
    double total = block_sum_partials(partial, parts);
    if (threadIdx.x == 0) out[*slot] = (float)(total * inv_n);
}
