// The discrete ray projector A of src/operator/ray.rs and its exact adjoint Aᵀ, on the GPU
// (src/backend/cuda/ct.rs, `GpuProjector`).
//
// Rays come from the host already clipped and sampled (RayProjector's segments, in voxel
// coordinates, voxel centre i at coordinate i): seg_a[r] = (start.xyz, samples as int bits),
// seg_b[r] = (delta.xyz, weight). Sample k sits at start + k·delta (ct_sample, shared by both
// kernels so that the adjoint is the exact transpose of the forward); the volume is read by
// bilinear (2D) or trilinear (3D) interpolation with zero outside the grid, and a measurement is
// weight · Σ_k interp(x_k), as on the CPU, whose RayProjector (ray.rs: `sample`, `taps`)
// computes the same sample points with the same roundings.
//
// - ct_forward: one warp per ray, lanes take every 32nd sample, a fixed shuffle tree sums them.
// - ct_adjoint: a gather, one thread per voxel: for each view, the voxel's interpolation support
//   (a 2×2(×2) box of voxels, widened by a margin) is projected onto the detector to find the
//   rays that can pass through it; for each such ray the samples inside the box are found by
//   slab intersection and tested exactly. No atomics: the result is deterministic.
// - ct_residual: r = A x − y, r / m for the adjoint, and ½ Σ r² in f64 per block.
//
// Compiled with --fmad=false (kernels.rs): every product and sum is rounded as Rust rounds it.

__device__ __forceinline__ float3 ct_sample(float4 a, float4 b, int k) {
    float kf = (float)k;
    return make_float3(a.x + kf * b.x, a.y + kf * b.y, a.z + kf * b.z);
}

// Σ over the interpolation taps of sample p: weight · volume, in RayProjector::taps's order.
__device__ __forceinline__ float ct_interp(const float* __restrict__ vol, float3 p, int dims, int nx, int ny,
                                           int nz) {
    float fx = floorf(p.x), fy = floorf(p.y);
    float tx = p.x - fx, ty = p.y - fy;
    int x0 = (int)fx, y0 = (int)fy;
    float acc = 0.0f;
    if (dims == 2) {
#pragma unroll
        for (int dy = 0; dy < 2; dy++) {
            int y = y0 + dy;
            if (y < 0 || y >= ny) continue;
            float wy = dy ? ty : 1.0f - ty;
#pragma unroll
            for (int dx = 0; dx < 2; dx++) {
                int x = x0 + dx;
                if (x < 0 || x >= nx) continue;
                float wx = dx ? tx : 1.0f - tx;
                acc += (wx * wy) * vol[x + (long long)nx * y];
            }
        }
    } else {
        float fz = floorf(p.z);
        float tz = p.z - fz;
        int z0 = (int)fz;
        for (int dz = 0; dz < 2; dz++) {
            int z = z0 + dz;
            if (z < 0 || z >= nz) continue;
            float wz = dz ? tz : 1.0f - tz;
            for (int dy = 0; dy < 2; dy++) {
                int y = y0 + dy;
                if (y < 0 || y >= ny) continue;
                float wy = dy ? ty : 1.0f - ty;
                for (int dx = 0; dx < 2; dx++) {
                    int x = x0 + dx;
                    if (x < 0 || x >= nx) continue;
                    float wx = dx ? tx : 1.0f - tx;
                    acc += (wx * wy * wz) * vol[x + (long long)nx * (y + (long long)ny * z)];
                }
            }
        }
    }
    return acc;
}

// out[r] = (A vol)[r]. One warp per ray: launch with a multiple of 32 threads per block and at
// least 32·n_rays threads.
extern "C" __global__ void ct_forward(const float4* __restrict__ seg_a, const float4* __restrict__ seg_b,
                                      int n_rays, int dims, int nx, int ny, int nz,
                                      const float* __restrict__ vol, float* __restrict__ out) {
    long long ray = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (ray >= n_rays) return;  // the whole warp leaves together
    float4 a = seg_a[ray], b = seg_b[ray];
    int n = __float_as_int(a.w);
    float acc = 0.0f;
    for (int k = lane; k < n; k += 32) acc += ct_interp(vol, ct_sample(a, b, k), dims, nx, ny, nz);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) out[ray] = acc * b.w;
}

// The interpolation weight of voxel index i (along one axis) at coordinate c, or -1 when i is
// not one of c's two taps; exactly the weight ct_interp gives that tap.
__device__ __forceinline__ float ct_tap(float c, int i) {
    float f = floorf(c);
    int i0 = (int)f;
    float t = c - f;
    if (i0 == i) return 1.0f - t;
    if (i0 == i - 1) return t;
    return -1.0f;
}

// Narrows the sample range [*k0, *k1] to the samples whose coordinate start + k·d lies in
// [lo, hi] (the range may come out empty, k0 > k1); false when d = 0 and no sample can.
__device__ __forceinline__ bool ct_slab(float start, float d, float lo, float hi, float* k0, float* k1) {
    if (d == 0.0f) return start >= lo && start <= hi;
    float ta = (lo - start) / d, tb = (hi - start) / d;
    *k0 = fmaxf(*k0, fminf(ta, tb));
    *k1 = fminf(*k1, fmaxf(ta, tb));
    return true;
}

// out = Aᵀ values (overwritten). One thread per voxel.
//
// views[2j] = cos θ_j, views[2j+1] = sin θ_j. geo = [divergent (0 or 1), dso, dsd, du, dv,
// detector offset u, detector offset v, volume lower corner x, y, z (mm), voxel size x, y, z (mm),
// margin (voxels)] (scan geometry, src/operator/ct_geometry.rs). Rays are view-major, then v,
// then u: r = (view·nv + iv)·nu + iu.
extern "C" __global__ void ct_adjoint(const float4* __restrict__ seg_a, const float4* __restrict__ seg_b,
                                      const float* __restrict__ values, const float* __restrict__ views,
                                      const float* __restrict__ geo, int n_views, int nu, int nv, int dims,
                                      int nx, int ny, int nz, float* __restrict__ out) {
    long long n_vox = (long long)nx * ny * nz;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n_vox) return;
    int ix = (int)(idx % nx);
    int iy = (int)((idx / nx) % ny);
    int iz = (int)(idx / ((long long)nx * ny));
    const bool divergent = geo[0] != 0.0f;
    const float dso = geo[1], dsd = geo[2], du = geo[3], dv = geo[4], off_u = geo[5], off_v = geo[6];
    const float margin = geo[13];
    // the support box in voxel coordinates, and its (widened) corners in world mm
    const float box_lo[3] = {(float)(ix - 1), (float)(iy - 1), (float)(iz - 1)};
    const float box_hi[3] = {(float)(ix + 1), (float)(iy + 1), (float)(iz + 1)};
    float wlo[3], whi[3];
    for (int a = 0; a < 3; a++) {
        float vs = geo[10 + a];
        wlo[a] = geo[7 + a] + (box_lo[a] - margin + 0.5f) * vs;
        whi[a] = geo[7 + a] + (box_hi[a] + margin + 0.5f) * vs;
    }
    if (dims == 2) {
        wlo[2] = 0.0f;
        whi[2] = 0.0f;
    }
    const int corners = dims == 2 ? 4 : 8;
    const float cu = 0.5f * (float)(nu - 1), cv = 0.5f * (float)(nv - 1);
    float acc = 0.0f;
    for (int view = 0; view < n_views; view++) {
        float c = views[2 * view], s = views[2 * view + 1];
        // detector extent of the box: the hull of its projected corners
        float u_min = 3.0e38f, u_max = -3.0e38f, v_min = 3.0e38f, v_max = -3.0e38f;
        bool everywhere = false;
        for (int k = 0; k < corners; k++) {
            float px = (k & 1) ? whi[0] : wlo[0];
            float py = (k & 2) ? whi[1] : wlo[1];
            float pz = (k & 4) ? whi[2] : wlo[2];
            float pu = -s * px + c * py;  // p · e_u
            float u = pu, v = pz;
            if (divergent) {
                float along = dso - (c * px + s * py);  // source to p along −e_s
                if (!(along > 1e-6f * dsd)) {
                    everywhere = true;
                    break;
                }
                float scale = dsd / along;
                u = pu * scale;
                v = pz * scale;
            }
            float fu = (u - off_u) / du + cu, fv = (v - off_v) / dv + cv;
            u_min = fminf(u_min, fu);
            u_max = fmaxf(u_max, fu);
            v_min = fminf(v_min, fv);
            v_max = fmaxf(v_max, fv);
        }
        int iu0 = 0, iu1 = nu - 1, iv0 = 0, iv1 = nv - 1;
        if (!everywhere) {
            if (u_max < 0.0f || u_min > (float)(nu - 1)) continue;
            iu0 = max(0, (int)ceilf(fmaxf(u_min, -1.0f)));
            iu1 = min(nu - 1, (int)floorf(fminf(u_max, (float)nu)));
            if (dims == 3) {
                if (v_max < 0.0f || v_min > (float)(nv - 1)) continue;
                iv0 = max(0, (int)ceilf(fmaxf(v_min, -1.0f)));
                iv1 = min(nv - 1, (int)floorf(fminf(v_max, (float)nv)));
            }
        }
        for (int iv = iv0; iv <= iv1; iv++) {
            for (int iu = iu0; iu <= iu1; iu++) {
                long long r = ((long long)view * nv + iv) * nu + iu;
                float4 a = seg_a[r], b = seg_b[r];
                int n = __float_as_int(a.w);
                if (n == 0) continue;
                float cr = values[r] * b.w;
                if (cr == 0.0f) continue;
                // samples whose coordinates can fall in the support box, one more each side (so
                // rounding in the slab bounds cannot drop a sample; each is tested exactly)
                float k0 = 0.0f, k1 = (float)(n - 1);
                if (!ct_slab(a.x, b.x, box_lo[0], box_hi[0], &k0, &k1)) continue;
                if (!ct_slab(a.y, b.y, box_lo[1], box_hi[1], &k0, &k1)) continue;
                if (dims == 3 && !ct_slab(a.z, b.z, box_lo[2], box_hi[2], &k0, &k1)) continue;
                int ka = max(0, (int)floorf(fminf(k0, (float)n)) - 1);
                int kb = min(n - 1, (int)ceilf(fmaxf(k1, -1.0f)) + 1);
                for (int k = ka; k <= kb; k++) {
                    float3 p = ct_sample(a, b, k);
                    float wx = ct_tap(p.x, ix);
                    if (wx < 0.0f) continue;
                    float wy = ct_tap(p.y, iy);
                    if (wy < 0.0f) continue;
                    float w = wx * wy;
                    if (dims == 3) {
                        float wz = ct_tap(p.z, iz);
                        if (wz < 0.0f) continue;
                        w = w * wz;
                    }
                    acc += cr * w;
                }
            }
        }
    }
    out[idx] = acc;
}

// resid[i] = (pred[i] − y[i]) / m; partial[block] = Σ ½ (pred − y)² in f64 over the block's
// grid-stride share. Launch with 256 threads per block.
extern "C" __global__ void ct_residual(const float* __restrict__ pred, const float* __restrict__ y, int n,
                                       float m, float* __restrict__ resid, double* __restrict__ partial) {
    double acc = 0.0;
    FOR_EACH(i, n) {
        float r = pred[i] - y[i];
        acc += 0.5 * (double)r * (double)r;
        resid[i] = r / m;
    }
    block_sum_to(acc, partial + blockIdx.x);
}

// The device-resident grid step of `fit ct` (src/task/ct.rs): the image is σ of the network's
// outputs, and ∂L/∂z = ∂L/∂p · p(1 − p), rounded as the host's `g * p * (1.0 - p)`.

// p[i] = σ(z[i]).
extern "C" __global__ void ct_sigmoid(const float* __restrict__ z, int n, float* __restrict__ p) {
    FOR_EACH(i, n) p[i] = sigmoidf_stable(z[i]);
}

// grad[i] = back[i] · p[i] · (1 − p[i]); the largest |grad| (NaN wins) of the block's grid-stride
// share into partial_max[blockIdx.x]. Launch with 256 threads per block.
extern "C" __global__ void ct_chain_absmax(const float* __restrict__ back, const float* __restrict__ p, int n,
                                           float* __restrict__ grad, float* __restrict__ partial_max) {
    float m = 0.0f;
    FOR_EACH(i, n) {
        float pi = p[i];
        float g = back[i] * pi * (1.0f - pi);
        grad[i] = g;
        m = absmax_keep_nan(m, g);
    }
    block_absmax_to(m, partial_max + blockIdx.x);
}

// out[0] = (Σ partial) / m: ct_residual's ½ Σ r² per block, as the mean over m rays. One block of
// 256 threads.
extern "C" __global__ void ct_loss_total(const double* __restrict__ partial, int parts, double m,
                                         double* __restrict__ out) {
    double total = block_sum_partials(partial, parts);
    if (threadIdx.x == 0) out[0] = total / m;
}
