// sde_step.cu: one reverse-SDE Euler–Maruyama step (em kernel, Σ_k = Δ_k I) with the path
// log-weight accumulation fused in (f64, as src/diffusion/sampler.rs):
//   φ ← φ + Δ s + √Δ z,   z ~ N(0, I) from Philox keyed by (seed, first_index + b, step),
//   log w_b += −½ Σ(Δ s + √Δ z)² / Δ + ½ Σ z² + step_const   (when `weights` ≠ 0).
// One block per sample; thread j draws the normals of sites 2j and 2j + 1.
#include "philox.cuh"
#include "block_reduce.cuh"

extern "C" __global__ void sde_em_step(double* __restrict__ phi, double* __restrict__ logw,
                                       const double* __restrict__ score, int v, double delta, double step_const,
                                       unsigned int key0, unsigned int key1, unsigned int first_index,
                                       unsigned int step, int weights) {
    long long b = blockIdx.x;
    double* p = phi + b * v;
    const double* s = score + b * v;
    double sq = sqrt(delta), dd = 0.0, zz = 0.0;
    int pairs = (v + 1) / 2;
    for (int j = threadIdx.x; j < pairs; j += blockDim.x) {
        philox4 ctr = {(unsigned int)j, first_index + (unsigned int)b, step, PHILOX_SDE_NOISE};
        double z[2];
        philox_normal2(philox4x32_10(ctr, key0, key1), &z[0], &z[1]);
        for (int e = 0; e < 2; ++e) {
            int i = 2 * j + e;
            if (i < v) {
                double d = delta * s[i] + sq * z[e];
                p[i] += d;
                dd += d * d;
                zz += z[e] * z[e];
            }
        }
    }
    dd = block_sum(dd);
    zz = block_sum(zz);
    if (threadIdx.x == 0 && weights) logw[b] += -0.5 * dd / delta + 0.5 * zz + step_const;
}
