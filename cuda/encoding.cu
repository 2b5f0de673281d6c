// γ: Fourier-feature encoding (src/encoding/mod.rs), fp32 (src/backend/cuda/encoding.rs) and
// fp16 (the fp16 training path keeps only fp16 features) side by side.
#include <cuda_fp16.h>

// Fourier feature `idx` of n × m (point i = idx / m, frequency k = idx mod m; B row-major m×d):
// t = B_k · v_i, and (cos 2πt, sin 2πt)·scale into *c_out, *s_out, which go to columns k and m + k
// of row i. Shared by encode_fourier (f32) and encode_fourier_h (fp16).
__device__ __forceinline__ void fourier_feature(const float* __restrict__ points, const float* __restrict__ b,
                                                int d, int m, float scale, long long idx, long long* i_out,
                                                int* k_out, float* c_out, float* s_out) {
    long long i = idx / m;
    int k = (int)(idx - i * m);
    const float* v = points + i * d;
    const float* row = b + (long long)k * d;
    float t = 0.0f;
    for (int a = 0; a < d; ++a) t += row[a] * v[a];
    float s, c;
    sincos_turns(t, &s, &c);
    *i_out = i;
    *k_out = k;
    *c_out = c * scale;
    *s_out = s * scale;
}

// Gaussian / positional / basic: out (n × 2m, row-major) = [cos 2πBv, sin 2πBv]·scale, with
// B row-major m×d. One thread per (point, frequency), so writes are coalesced along a row.
extern "C" __global__ void encode_fourier(const float* __restrict__ points, const float* __restrict__ b,
                                          int n, int d, int m, float scale, float* __restrict__ out) {
    FOR_EACH(idx, (long long)n * m) {
        long long i;
        int k;
        float c, s;
        fourier_feature(points, b, d, m, scale, idx, &i, &k, &c, &s);
        float* o = out + i * 2 * (long long)m;
        o[k] = c;
        o[m + k] = s;
    }
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

// `none`: features are 2v − 1.
extern "C" __global__ void encode_identity(const float* __restrict__ points, long long len,
                                           float* __restrict__ out) {
    FOR_EACH(i, len) { out[i] = 2.0f * points[i] - 1.0f; }
}

// encode_identity into fp16.
extern "C" __global__ void encode_identity_h(const float* __restrict__ points, long long len,
                                             __half* __restrict__ out) {
    FOR_EACH(i, len) { out[i] = __float2half_rn(2.0f * points[i] - 1.0f); }
}
