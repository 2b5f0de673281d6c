// γ: Fourier-feature encoding (src/encoding/mod.rs).

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

// `none`: features are 2v − 1.
extern "C" __global__ void encode_identity(const float* __restrict__ points, long long len,
                                           float* __restrict__ out) {
    FOR_EACH(i, len) { out[i] = 2.0f * points[i] - 1.0f; }
}
