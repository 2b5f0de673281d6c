// Element-wise pieces of the MLP around the cuBLAS products (src/backend/cuda/mlp.rs; the CPU
// reference is src/backend/cpu.rs): Z = A·Wᵀ + b with ReLU on hidden layers; backward dW = dZᵀ·A,
// db = Σ_rows dZ, dA = dZ·W. The fp16 variants sit beside their fp32 kernels: in fp16 the hidden
// activations and ∂L/∂Z live only as fp16, so every element-wise pass reads and writes half the
// bytes:
//   forward:  GEMM (fp16 in, fp32 accumulate, fp16 out) → bias_relu_h in place (bias added in
//             fp32, one rounding back to fp16)
//   backward: GEMM dA (fp16 out) → relu_mask_colsum_h in place, which also sums the masked
//             columns for the bias gradient of the layer below (fixed order, deterministic)
#include <cuda_fp16.h>

// z (rows × cols, row-major) += bias per column, then ReLU when `relu` is non-zero.
extern "C" __global__ void bias_act(float* __restrict__ z, const float* __restrict__ bias, int rows, int cols,
                                    int relu) {
    FOR_EACH(i, (long long)rows * cols) {
        float v = z[i] + bias[i % cols];
        z[i] = relu ? fmaxf(v, 0.0f) : v;
    }
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

// ∂L/∂A through the ReLU of the layer below: zero where the post-ReLU activation is not positive.
extern "C" __global__ void relu_mask(float* __restrict__ grad, const float* __restrict__ act, long long len) {
    FOR_EACH(i, len) {
        if (act[i] <= 0.0f) grad[i] = 0.0f;
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

// Bias gradient, pass 1: column sums of x (rows × cols) over blocks of `rows_per_part` rows, in
// f64. Block (32, 8); grid (ceil(cols/32), parts). Writes partial[part * cols + col]. The order of
// every sum is fixed, so results do not depend on timing.
extern "C" __global__ void column_sums_partial(const float* __restrict__ x, int rows, int cols, int rows_per_part,
                                               double* __restrict__ partial) {
    __shared__ double acc[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int part = blockIdx.y;
    long long r0 = (long long)part * rows_per_part;
    long long r1 = min((long long)rows, r0 + rows_per_part);
    double s = 0.0;
    if (col < cols) {
        for (long long r = r0 + threadIdx.y; r < r1; r += 8) s += (double)x[r * cols + col];
    }
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        double t = 0.0;
        for (int j = 0; j < 8; ++j) t += acc[j][threadIdx.x];
        partial[(long long)part * cols + col] = t;
    }
}

// Bias gradient, pass 2: out[col] = scale · Σ_part partial[part * cols + col], in order. `scale`
// undoes the fp16 loss scaling (1 in fp32 mode, which leaves the sum exact).
extern "C" __global__ void column_sums_final(const double* __restrict__ partial, int parts, int cols, float scale,
                                             float* __restrict__ out) {
    FOR_EACH(col, cols) {
        double t = 0.0;
        for (int p = 0; p < parts; ++p) t += partial[(long long)p * cols + col];
        out[col] = (float)(t * (double)scale);
    }
}

// out[i] = g[i] · scale: a ∂L/∂output already on the device into the backward's fp32 buffer,
// times the fp16 loss scale (a power of two; 1 in fp32, which copies exactly), rounded as the host
// path's `g * scale`.
extern "C" __global__ void scale_into(const float* __restrict__ g, long long n, float scale,
                                      float* __restrict__ out) {
    FOR_EACH(i, n) out[i] = g[i] * scale;
}

// fp32 → fp16 (round to nearest): the fp16 weight copy after a checkpoint is loaded, and the
// output layer's ∂L/∂Z.
extern "C" __global__ void f32_to_f16(const float* __restrict__ x, long long n, __half* __restrict__ out) {
    FOR_EACH(i, n) { out[i] = __float2half_rn(x[i]); }
}
