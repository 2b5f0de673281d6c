// The inside test on the GPU: generalized winding numbers with the far-field tree of
// src/geometry/winding.rs (`WindingNumber::winding_with` and `label_points`), in f64 as there.
// The host uploads `WindingNumber::export_flat()` once per mesh:
//   nodes: 2 u32 per node (right_or_first, count); count 0 = inner node, left child = next node
//   tris:  9 f32 per triangle in leaf order (a, b, c)
//   far:   WINDING_FAR_STRIDE f64 per node, laid out as `FlatWinding::far` documents
// One thread per point, an explicit stack of WINDING_STACK node indices (the host checks the
// tree's depth against it). The traversal, the order of every sum and the two labelling passes
// are the CPU's, so the winding numbers agree to the last bits of atan2/sqrt and labels agree
// except for points within ~1e-15 of w = 1/2.

#define WINDING_FAR_STRIDE 50
#define WINDING_STACK 64

struct dvec3 {
    double x, y, z;
};

__device__ __forceinline__ dvec3 dv(double x, double y, double z) {
    dvec3 r;
    r.x = x;
    r.y = y;
    r.z = z;
    return r;
}
__device__ __forceinline__ dvec3 dsub(dvec3 a, dvec3 b) { return dv(a.x - b.x, a.y - b.y, a.z - b.z); }
// glam's dot: (x·x' + y·y') + z·z'
__device__ __forceinline__ double ddot(dvec3 a, dvec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
// glam's cross
__device__ __forceinline__ dvec3 dcross(dvec3 a, dvec3 b) {
    return dv(a.y * b.z - b.y * a.z, a.z * b.x - b.z * a.x, a.x * b.y - b.x * a.y);
}
// glam's DMat3 * DVec3 on a column-major matrix: (col0·v.x + col1·v.y) + col2·v.z
__device__ __forceinline__ dvec3 dmat_mul(const double* __restrict__ m, dvec3 v) {
    return dv(m[0] * v.x + m[3] * v.y + m[6] * v.z, m[1] * v.x + m[4] * v.y + m[7] * v.z,
              m[2] * v.x + m[5] * v.y + m[8] * v.z);
}
__device__ __forceinline__ dvec3 corner(const float* __restrict__ t) {
    return dv((double)__ldg(t), (double)__ldg(t + 1), (double)__ldg(t + 2));
}

// `solid_angle`: Van Oosterom–Strackee, signed, in steradians.
__device__ __forceinline__ double solid_angle(const float* __restrict__ tri, dvec3 q) {
    dvec3 a = dsub(corner(tri), q);
    dvec3 b = dsub(corner(tri + 3), q);
    dvec3 c = dsub(corner(tri + 6), q);
    double la = sqrt(ddot(a, a)), lb = sqrt(ddot(b, b)), lc = sqrt(ddot(c, c));
    double num = ddot(a, dcross(b, c));
    double den = la * lb * lc + ddot(a, b) * lc + ddot(a, c) * lb + ddot(b, c) * la;
    return 2.0 * atan2(num, den);
}

// `expansion`: third-order far-field term (times 4π) of a node; r = c − q, d2 = |r|².
__device__ __forceinline__ double far_expansion(const double* __restrict__ f, dvec3 r, double d2) {
    double d = sqrt(d2);
    double inv3 = 1.0 / (d2 * d);
    double inv5 = inv3 / d2;
    double inv7 = inv5 / d2;
    dvec3 dipole = dv(__ldg(f + 4), __ldg(f + 5), __ldg(f + 6));
    double trace = __ldg(f + 16);
    double rmr = ddot(r, dmat_mul(f + 7, r));
    double first = ddot(r, dipole) * inv3;
    double second = trace * inv3 - 3.0 * rmr * inv5;
    dvec3 u = dv(__ldg(f + 17), __ldg(f + 18), __ldg(f + 19));
    dvec3 traces = dv(__ldg(f + 20), __ldg(f + 21), __ldg(f + 22));
    dvec3 rcr = dv(ddot(r, dmat_mul(f + 23, r)), ddot(r, dmat_mul(f + 32, r)), ddot(r, dmat_mul(f + 41, r)));
    double third = 0.5 * (-3.0 * inv5 * (2.0 * ddot(u, r) + ddot(traces, r)) + 15.0 * inv7 * ddot(r, rcr));
    return first + second + third;
}

// `WindingNumber::winding_with`: the hierarchical winding number at q with accuracy β².
__device__ double winding_at(dvec3 q, const unsigned* __restrict__ nodes, const float* __restrict__ tris,
                             const double* __restrict__ far, int n_nodes, double beta2) {
    if (n_nodes <= 0) return 0.0;
    unsigned stack[WINDING_STACK];
    int top = 0;
    stack[top++] = 0;
    double sum = 0.0;
    while (top > 0) {
        unsigned index = stack[--top];
        const double* f = far + (size_t)index * WINDING_FAR_STRIDE;
        dvec3 r = dsub(dv(__ldg(f), __ldg(f + 1), __ldg(f + 2)), q);
        double d2 = ddot(r, r);
        if (d2 > beta2 * __ldg(f + 3)) {
            sum += far_expansion(f, r, d2);
            continue;
        }
        unsigned first = __ldg(nodes + 2 * (size_t)index);
        unsigned count = __ldg(nodes + 2 * (size_t)index + 1);
        if (count > 0) {
            for (unsigned k = first; k < first + count; ++k) sum += solid_angle(tris + 9 * (size_t)k, q);
        } else {
            // right child first, so the left one is popped (and summed) first, as on the CPU
            stack[top++] = first;
            stack[top++] = index + 1;
        }
    }
    return sum / (4.0 * 3.14159265358979323846);
}

// `WindingNumber::label_points`: labels[i] = 1 when w(points[i]) > 1/2, else 0. A coarse pass
// with beta2_coarse decides; points whose coarse w is within `recheck` of 1/2 are evaluated again
// with beta2_fine. points: n × 3 f32.
extern "C" __global__ void winding_label(const float* __restrict__ points, long long n,
                                         const unsigned* __restrict__ nodes, const float* __restrict__ tris,
                                         const double* __restrict__ far, int n_nodes, double beta2_coarse,
                                         double beta2_fine, double recheck, float* __restrict__ labels) {
    FOR_EACH(i, n) {
        dvec3 q = dv((double)points[3 * i], (double)points[3 * i + 1], (double)points[3 * i + 2]);
        double w = winding_at(q, nodes, tris, far, n_nodes, beta2_coarse);
        if (fabs(w - 0.5) < recheck) w = winding_at(q, nodes, tris, far, n_nodes, beta2_fine);
        labels[i] = w > 0.5 ? 1.0f : 0.0f;
    }
}

// The winding number itself at β² (`WindingNumber::winding` for beta2 = the tree's), for tests.
extern "C" __global__ void winding_values(const float* __restrict__ points, long long n,
                                          const unsigned* __restrict__ nodes, const float* __restrict__ tris,
                                          const double* __restrict__ far, int n_nodes, double beta2,
                                          double* __restrict__ out) {
    FOR_EACH(i, n) {
        dvec3 q = dv((double)points[3 * i], (double)points[3 * i + 1], (double)points[3 * i + 2]);
        out[i] = winding_at(q, nodes, tris, far, n_nodes, beta2);
    }
}
