// Shared device helpers. src/backend/cuda/kernels.rs prepends this file to every kernel source
// before NVRTC compiles it (NVRTC has no file system of ours to #include from).
//
// The module is compiled with --fmad=false so that a*b + c rounds twice, as Rust does: the
// encoding, the bias epilogue and Adam then match the CPU backend bit for bit on equal inputs.

typedef unsigned long long u64;

// SplitMix64's finaliser, as src/sample/rng.rs `mix64`.
__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// CounterRng::u64(index) for a stream whose key the host computed (CounterRng::new).
__device__ __forceinline__ u64 rng_u64(u64 key, u64 index) {
    return mix64(key ^ mix64(index * 0x9e3779b97f4a7c15ULL));
}

// CounterRng::uniform: uniform in [0, 1) with 24 random bits.
__device__ __forceinline__ float rng_uniform(u64 key, u64 index) {
    return (float)(rng_u64(key, index) >> 40) * (1.0f / 16777216.0f);
}

// (sin 2πt, cos 2πt) with the same range reduction and polynomials as
// src/encoding/mod.rs `sincos_turns`, so both backends produce the same features.
__device__ __forceinline__ void sincos_turns(float t, float* s_out, float* c_out) {
    const float MAGIC = 12582912.0f;  // 1.5·2^23: adding and subtracting rounds to nearest
    const float TAU = 6.28318530717958647692f;
    float r = t - ((t + MAGIC) - MAGIC);        // in [-0.5, 0.5]
    float q4 = (r * 4.0f + MAGIC) - MAGIC;      // nearest quarter turn, in {-2..2}
    float x = (r - q4 * 0.25f) * TAU;           // in [-π/4, π/4]
    float x2 = x * x;
    float s = x * (1.0f + x2 * (-1.0f / 6.0f + x2 * (1.0f / 120.0f + x2 * (-1.0f / 5040.0f))));
    float c = 1.0f + x2 * (-0.5f + x2 * (1.0f / 24.0f + x2 * (-1.0f / 720.0f + x2 * (1.0f / 40320.0f))));
    int q = ((int)q4) & 3;
    float s1 = (q & 1) ? c : s;
    float c1 = (q & 1) ? -s : c;
    float sign = (q & 2) ? -1.0f : 1.0f;
    *s_out = s1 * sign;
    *c_out = c1 * sign;
}

// Grid-stride loop over [0, n).
#define FOR_EACH(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
         i += (long long)blockDim.x * gridDim.x)

// σ(z) exactly as src/train/loss.rs `sigmoid` writes it (no overflow for either sign).
__device__ __forceinline__ float sigmoidf_stable(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

// Tree sum of one double per thread over a block of 256 threads in a fixed order (no atomics:
// the same inputs give the same bits); thread 0 writes the total to *out.
__device__ __forceinline__ void block_sum_to(double v, double* out) {
    __shared__ double s[256];
    s[threadIdx.x] = v;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = s[0];
}

// Σ partial[0..parts) over one block of 256 threads: each thread adds its stride-blockDim share
// in order, then block_sum_to's fixed tree; every thread gets the total. For the kernels that
// finish a loss from per-block partial sums.
__device__ __forceinline__ double block_sum_partials(const double* __restrict__ partial, int parts) {
    double acc = 0.0;
    for (int p = threadIdx.x; p < parts; p += blockDim.x) acc += partial[p];
    __shared__ double total;
    block_sum_to(acc, &total);
    __syncthreads();
    return total;
}

// max(m, |x|) that keeps a NaN (fmaxf would drop it): a diverged gradient must reach the host
// as a non-finite maximum. m is ≥ 0 or NaN; once NaN, it stays NaN.
__device__ __forceinline__ float absmax_keep_nan(float m, float x) {
    float a = fabsf(x);
    return (a > m || a != a) ? a : m;
}

// Max of one value per thread (each ≥ 0 or NaN) over a block of 256 threads, NaN winning, in a
// fixed tree (the max is exact, so the result does not depend on the order anyway); thread 0
// writes it to *out.
__device__ __forceinline__ void block_absmax_to(float v, float* out) {
    __shared__ float s[256];
    s[threadIdx.x] = v;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) s[threadIdx.x] = absmax_keep_nan(s[threadIdx.x], s[threadIdx.x + w]);
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = s[0];
}
