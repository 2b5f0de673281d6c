// Query points on the GPU (src/sample/mod.rs), from the same counter RNG as the host.

// CounterRng::uniform(first + i) for i in [0, n).
extern "C" __global__ void rng_uniform_fill(u64 key, u64 first, long long n, float* __restrict__ out) {
    FOR_EACH(i, n) { out[i] = rng_uniform(key, first + (u64)i); }
}

// `uniform_in_box`: point i uses counters first + 3i .. first + 3i + 2; out is n × 3.
extern "C" __global__ void sample_uniform_box(u64 key, u64 first, long long n, float lo_x, float lo_y, float lo_z,
                                              float size_x, float size_y, float size_z, float* __restrict__ out) {
    FOR_EACH(i, n) {
        u64 c = first + 3ULL * (u64)i;
        out[3 * i + 0] = lo_x + rng_uniform(key, c) * size_x;
        out[3 * i + 1] = lo_y + rng_uniform(key, c + 1) * size_y;
        out[3 * i + 2] = lo_z + rng_uniform(key, c + 2) * size_z;
    }
}
