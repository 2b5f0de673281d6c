// Adam with bias correction (src/train/adam.rs). c1 = 1/(1 − β1^t) and c2 = 1/(1 − β2^t) come
// from the host, computed exactly as the CPU backend computes them.

extern "C" __global__ void adam_step(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                     float* __restrict__ v, long long n, float lr, float b1, float b2, float eps,
                                     float c1, float c2) {
    FOR_EACH(i, n) { adam_update(p, g, m, v, i, lr, b1, b2, eps, c1, c2); }
}
