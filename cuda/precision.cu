// Conversions for the fp16 tensor-core path: fp32 master weights and activations are rounded to
// fp16 copies that feed cuBLAS GemmEx (fp16 in, fp32 accumulate and out).
#include <cuda_fp16.h>

extern "C" __global__ void f32_to_f16(const float* __restrict__ x, long long n, __half* __restrict__ out) {
    FOR_EACH(i, n) { out[i] = __float2half_rn(x[i]); }
}

// bias_act followed by an fp16 copy of the result, for the next layer's product.
extern "C" __global__ void bias_act_f16(float* __restrict__ z, const float* __restrict__ bias, int rows, int cols,
                                        int relu, __half* __restrict__ out16) {
    FOR_EACH(i, (long long)rows * cols) {
        float v = z[i] + bias[i % cols];
        v = relu ? fmaxf(v, 0.0f) : v;
        z[i] = v;
        out16[i] = __float2half_rn(v);
    }
}

// relu_mask followed by an fp16 copy of the masked gradient.
extern "C" __global__ void relu_mask_f16(float* __restrict__ grad, const float* __restrict__ act, long long len,
                                         __half* __restrict__ out16) {
    FOR_EACH(i, len) {
        float g = act[i] <= 0.0f ? 0.0f : grad[i];
        grad[i] = g;
        out16[i] = __float2half_rn(g);
    }
}
