// γ: Fourier-feature encoding (src/encoding/mod.rs).

// Gaussian / positional / basic: out (n × 2m, row-major) = [cos 2πBv, sin 2πBv]·scale, with
// B row-major m×d. One thread per (point, frequency), so writes are coalesced along a row.
extern "C" __global__ void encode_fourier(const float* __restrict__ points, const float* __restrict__ b,
                                          int n, int d, int m, float scale, float* __restrict__ out) {
    FOR_EACH(idx, (long long)n * m) {
        long long i = idx / m;
        int k = (int)(idx - i * m);
        const float* v = points + i * d;
        const float* row = b + (long long)k * d;
        float t = 0.0f;
        for (int a = 0; a < d; ++a) t += row[a] * v[a];
        float s, c;
        sincos_turns(t, &s, &c);
        float* o = out + i * 2 * (long long)m;
        o[k] = c * scale;
        o[m + k] = s * scale;
    }
}

// `none`: features are 2v − 1.
extern "C" __global__ void encode_identity(const float* __restrict__ points, long long len,
                                           float* __restrict__ out) {
    FOR_EACH(i, len) { out[i] = 2.0f * points[i] - 1.0f; }
}
