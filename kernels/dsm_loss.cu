// dsm_loss.cu: the denoising score-matching objective around the network (f32), as
// src/diffusion/objective.rs. Before the network: x_in = c_in(σ_b)·(φ0 + σ_b z) with
// c_in = 1/√(σ_data² + σ²). After it (F = network output): residual r = F + z,
// ℓ_b = Σ_x r², dL/dF = (2/B)·r for L = mean_b ℓ_b.
#include "block_reduce.cuh"

extern "C" __global__ void dsm_input(float* __restrict__ x_in, const float* __restrict__ phi0,
                                     const float* __restrict__ z, const float* __restrict__ sigma, int bsz, int v,
                                     double sigma_data) {
    long long n = (long long)bsz * v;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long b = i / v;
        float s = sigma[b];
        double sd = (double)s;
        float c = (float)(1.0 / sqrt(sigma_data * sigma_data + sd * sd));
        x_in[i] = (phi0[i] + s * z[i]) * c;
    }
}

// One block per sample: resid = F + z, dout = (2/B)·resid, per_sample[b] = Σ resid².
extern "C" __global__ void dsm_residual(float* __restrict__ resid, float* __restrict__ dout,
                                        float* __restrict__ per_sample, const float* __restrict__ f,
                                        const float* __restrict__ z, int bsz, int v) {
    long long b = blockIdx.x;
    float g = 2.0f / (float)bsz;
    double l = 0.0;
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
        long long i = b * v + j;
        float r = f[i] + z[i];
        resid[i] = r;
        dout[i] = g * r;
        l += (double)r * r;
    }
    l = block_sum(l);
    if (threadIdx.x == 0) per_sample[b] = (float)l;
}
