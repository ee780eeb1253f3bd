// groupnorm.cu: GroupNorm over (C/G channels × H × W) per sample with per-channel γ, β (f32).
// A group of sample b is the contiguous block i = b·G + g of n = (C/G)·HW values (NCHW).
// One block per group for the statistics and dinp; one block per channel for dγ, dβ.
// Statistics are accumulated in f64 (two passes: mean, then centred variance).
#include "block_reduce.cuh"

// stats[2i] = mean, stats[2i+1] = 1/sqrt(var + eps), as src/nn/groupnorm.rs.
extern "C" __global__ void groupnorm_fwd(float* __restrict__ out, float* __restrict__ stats,
                                         const float* __restrict__ inp, const float* __restrict__ gamma,
                                         const float* __restrict__ beta, int c, int hw, int groups, float eps) {
    long long i = blockIdx.x;
    int cg = c / groups, g = (int)(i % groups);
    long long n = (long long)cg * hw;
    const float* x = inp + i * n;
    double s = 0.0;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) s += x[j];
    float mean = (float)(block_sum(s) / (double)n);
    double q = 0.0;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        double d = (double)(x[j] - mean);
        q += d * d;
    }
    float var = (float)(block_sum(q) / (double)n);
    float rstd = 1.0f / sqrtf(var + eps);
    if (threadIdx.x == 0) {
        stats[2 * i] = mean;
        stats[2 * i + 1] = rstd;
    }
    float* o = out + i * n;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        int ch = g * cg + (int)(j / hw);
        o[j] = (x[j] - mean) * (gamma[ch] * rstd) + beta[ch];
    }
}

// dinp += rstd · (dy·γ − mean(dy·γ) − x̂ · mean(dy·γ·x̂)), one block per group.
extern "C" __global__ void groupnorm_bwd_input(float* __restrict__ dinp, const float* __restrict__ dout,
                                               const float* __restrict__ inp, const float* __restrict__ stats,
                                               const float* __restrict__ gamma, int c, int hw, int groups) {
    long long i = blockIdx.x;
    int cg = c / groups, g = (int)(i % groups);
    long long n = (long long)cg * hw;
    const float* x = inp + i * n;
    const float* dy = dout + i * n;
    float mean = stats[2 * i], rstd = stats[2 * i + 1];
    double s1 = 0.0, s2 = 0.0;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        float dxh = dy[j] * gamma[g * cg + (int)(j / hw)];
        s1 += dxh;
        s2 += dxh * ((x[j] - mean) * rstd);
    }
    float m1 = (float)(block_sum(s1) / (double)n);
    float m2 = (float)(block_sum(s2) / (double)n);
    float* dx = dinp + i * n;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        float ga = gamma[g * cg + (int)(j / hw)];
        float xh = (x[j] - mean) * rstd;
        dx[j] += rstd * (dy[j] * ga - m1 - xh * m2);
    }
}

// dγ[ch] += Σ_b Σ_s dy·x̂, dβ[ch] += Σ_b Σ_s dy; one block per channel.
extern "C" __global__ void groupnorm_bwd_affine(float* __restrict__ dgamma, float* __restrict__ dbeta,
                                                const float* __restrict__ dout, const float* __restrict__ inp,
                                                const float* __restrict__ stats, int b, int c, int hw, int groups) {
    int ch = blockIdx.x, cg = c / groups, g = ch / cg;
    double sg = 0.0, sb = 0.0;
    long long n = (long long)b * hw;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        long long bi = j / hw;
        int s = (int)(j - bi * hw);
        long long off = (bi * c + ch) * hw + s;
        long long st = 2 * (bi * groups + g);
        float dy = dout[off];
        sg += dy * ((inp[off] - stats[st]) * stats[st + 1]);
        sb += dy;
    }
    sg = block_sum(sg);
    sb = block_sum(sb);
    if (threadIdx.x == 0) {
        dgamma[ch] += (float)sg;
        dbeta[ch] += (float)sb;
    }
}
