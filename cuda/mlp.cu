// Element-wise pieces of the MLP around the cuBLAS products (src/backend/cpu.rs):
// Z = A·Wᵀ + b with ReLU on hidden layers; backward dW = dZᵀ·A, db = Σ_rows dZ, dA = dZ·W.

// z (rows × cols, row-major) += bias per column, then ReLU when `relu` is non-zero.
extern "C" __global__ void bias_act(float* __restrict__ z, const float* __restrict__ bias, int rows, int cols,
                                    int relu) {
    FOR_EACH(i, (long long)rows * cols) {
        float v = z[i] + bias[i % cols];
        z[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// ∂L/∂A through the ReLU of the layer below: zero where the post-ReLU activation is not positive.
extern "C" __global__ void relu_mask(float* __restrict__ grad, const float* __restrict__ act, long long len) {
    FOR_EACH(i, len) {
        if (act[i] <= 0.0f) grad[i] = 0.0f;
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
