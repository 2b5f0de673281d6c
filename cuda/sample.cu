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

// CounterRng::uniform_f64: uniform in [0, 1) with 53 random bits.
__device__ __forceinline__ double rng_uniform_f64(u64 key, u64 index) {
    return (double)(rng_u64(key, index) >> 11) * (1.0 / 9007199254740992.0);
}

// CounterRng::normal: Box–Muller in f64 from counters 2·index and 2·index + 1, rounded to f32.
// log and cos may differ from the host's in the last bit of the f64, rarely in the f32.
__device__ __forceinline__ float rng_normal(u64 key, u64 index) {
    double u1 = 1.0 - rng_uniform_f64(key, 2 * index);
    double u2 = rng_uniform_f64(key, 2 * index + 1);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

// `near_surface`: a face chosen uniformly (CounterRng::below), a uniform point on it, plus
// N(0, sigma²) noise per axis. Point i uses counters first + 10i .. first + 10i + 9; `first` is
// already rounded up to even by the host. faces: n_faces × 9 f32 (a, b, c in the source order
// of the mesh's triangles); out: n × 3.
extern "C" __global__ void sample_near_surface(u64 key, u64 first, long long n, const float* __restrict__ faces,
                                               u64 n_faces, float sigma, float* __restrict__ out) {
    FOR_EACH(j, n) {
        u64 i = first + 10ULL * (u64)j;
        u64 t = __umul64hi(rng_u64(key, i), n_faces);
        const float* f = faces + 9 * t;
        float u = rng_uniform(key, i + 1), v = rng_uniform(key, i + 2);
        if (u + v > 1.0f) {
            u = 1.0f - u;
            v = 1.0f - v;
        }
        u64 k = i / 2 + 2;
        float noise[3] = {rng_normal(key, k) * sigma, rng_normal(key, k + 1) * sigma, rng_normal(key, k + 2) * sigma};
        for (int a = 0; a < 3; ++a) {
            float pa = f[a], pb = f[3 + a], pc = f[6 + a];
            out[3 * j + a] = pa + (pb - pa) * u + (pc - pa) * v + noise[a];
        }
    }
}
