// Losses on the network's outputs (src/train/loss.rs): per-sample gradient into `grad`, and the
// loss summed in f64 per block into `partial[blockIdx.x]`; `mean_of_partials` finishes the mean.
// Launch with 256 threads per block.

// Sigmoid cross-entropy on logits: max(z,0) − z·y + log(1 + e^(−|z|)); grad = (σ(z) − y)·inv_n.
extern "C" __global__ void loss_bce(const float* __restrict__ z, const float* __restrict__ y, int n, float inv_n,
                                    float grad_scale, float* __restrict__ grad, double* __restrict__ partial) {
    double acc = 0.0;
    FOR_EACH(i, n) {
        float zi = z[i], yi = y[i];
        float l = fmaxf(zi, 0.0f) - zi * yi + log1pf(expf(-fabsf(zi)));
        acc += (double)l;
        grad[i] = (sigmoidf_stable(zi) - yi) * inv_n * grad_scale;
    }
    block_sum_to(acc, partial + blockIdx.x);
}

// ½(p − y)²; grad = (p − y)·inv_n.
extern "C" __global__ void loss_mse(const float* __restrict__ p, const float* __restrict__ y, int n, float inv_n,
                                    float grad_scale, float* __restrict__ grad, double* __restrict__ partial) {
    double acc = 0.0;
    FOR_EACH(i, n) {
        float r = p[i] - y[i];
        acc += 0.5 * (double)r * (double)r;
        grad[i] = r * inv_n * grad_scale;
    }
    block_sum_to(acc, partial + blockIdx.x);
}

// out[0] = (float)(Σ partial · inv_n). One block of 256 threads.
extern "C" __global__ void mean_of_partials(const double* __restrict__ partial, int parts, double inv_n,
                                            float* __restrict__ out) {
    double total = block_sum_partials(partial, parts);
    if (threadIdx.x == 0) out[0] = (float)(total * inv_n);
}

// mean_of_partials writing out[*slot]: the loss slot of a graph-replayed step.
// One block of 256 threads.
extern "C" __global__ void mean_of_partials_slot(const double* __restrict__ partial, int parts, double inv_n,
                                                 const int* __restrict__ slot, float* __restrict__ out) {
    double total = block_sum_partials(partial, parts);
    if (threadIdx.x == 0) out[*slot] = (float)(total * inv_n);
}

// out[0] = max over partial[0..parts) (each ≥ 0 or NaN; NaN wins), as a double. One block of 256
// threads. The device-resident grid steps read it with their loss, for the fp16 loss scale.
extern "C" __global__ void absmax_total(const float* __restrict__ partial, int parts, double* __restrict__ out) {
    float m = 0.0f;
    for (int p = threadIdx.x; p < parts; p += blockDim.x) m = absmax_keep_nan(m, partial[p]);
    __shared__ float total;
    block_absmax_to(m, &total);
    __syncthreads();
    if (threadIdx.x == 0) out[0] = (double)total;
}
