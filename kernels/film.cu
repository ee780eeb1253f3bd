// film.cu: FiLM modulation by the noise embedding (f32), as src/nn/activation.rs:
//   out[b, c, s] = inp[b, c, s]·(1 + ss[b, c]) + ss[b, C + c],  ss is [B, 2C].
#include "block_reduce.cuh"

extern "C" __global__ void film_fwd(float* __restrict__ out, const float* __restrict__ inp,
                                    const float* __restrict__ ss, int b, int c, int hw) {
    long long n = (long long)b * c * hw;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long plane = i / hw;
        long long bi = plane / c;
        int ch = (int)(plane - bi * c);
        out[i] = inp[i] * (1.0f + ss[bi * 2 * c + ch]) + ss[bi * 2 * c + c + ch];
    }
}

// One block per (b, c) plane: dinp += dy·(1 + scale); dss[b, c] += Σ dy·x, dss[b, C + c] += Σ dy.
extern "C" __global__ void film_bwd(float* __restrict__ dinp, float* __restrict__ dss, const float* __restrict__ dout,
                                    const float* __restrict__ inp, const float* __restrict__ ss, int c, int hw) {
    long long plane = blockIdx.x;
    long long bi = plane / c;
    int ch = (int)(plane - bi * c);
    float sc = 1.0f + ss[bi * 2 * c + ch];
    const float* dy = dout + plane * hw;
    const float* x = inp + plane * hw;
    float* dx = dinp + plane * hw;
    double dsc = 0.0, dsh = 0.0;
    for (int j = threadIdx.x; j < hw; j += blockDim.x) {
        float y = dy[j];
        dx[j] += y * sc;
        dsc += y * x[j];
        dsh += y;
    }
    dsc = block_sum(dsc);
    dsh = block_sum(dsh);
    if (threadIdx.x == 0) {
        dss[bi * 2 * c + ch] += (float)dsc;
        dss[bi * 2 * c + c + ch] += (float)dsh;
    }
}
