// bias_silu.cu: element-wise layers (f32): SiLU, fused bias + SiLU, residual add,
// gradient accumulation, channel concat. Backward kernels accumulate (dinp +=), as the
// CPU layers in src/nn/activation.rs do, so branches need no special case.

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

#define GRID_STRIDE(i, n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)blockDim.x * gridDim.x)

extern "C" __global__ void silu_fwd(float* __restrict__ out, const float* __restrict__ inp, long long n) {
    GRID_STRIDE(i, n) {
        float x = inp[i];
        out[i] = x * sigmoidf(x);
    }
}

extern "C" __global__ void silu_bwd(float* __restrict__ dinp, const float* __restrict__ dout,
                                    const float* __restrict__ inp, long long n) {
    GRID_STRIDE(i, n) {
        float x = inp[i], s = sigmoidf(x);
        dinp[i] += dout[i] * s * (1.0f + x * (1.0f - s));
    }
}

// pre[b, c, s] += bias[c]; out = SiLU(pre): a dense layer's bias and activation in one pass.
extern "C" __global__ void bias_silu_fwd(float* __restrict__ out, float* __restrict__ pre,
                                         const float* __restrict__ bias, int b, int c, int hw) {
    long long n = (long long)b * c * hw;
    GRID_STRIDE(i, n) {
        int ch = (int)((i / hw) % c);
        float x = pre[i] + bias[ch];
        pre[i] = x;
        out[i] = x * sigmoidf(x);
    }
}

extern "C" __global__ void add_fwd(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,
                                   long long n) {
    GRID_STRIDE(i, n) { out[i] = a[i] + b[i]; }
}

extern "C" __global__ void accumulate_f32(float* __restrict__ dst, const float* __restrict__ src, long long n) {
    GRID_STRIDE(i, n) { dst[i] += src[i]; }
}

// out[b] = [a[b] (ca channels); c[b] (cb channels)], all [.., hw].
extern "C" __global__ void concat_fwd(float* __restrict__ out, const float* __restrict__ a, int ca,
                                      const float* __restrict__ c, int cb, int b, int hw) {
    long long per = (long long)(ca + cb) * hw, n = b * per, na = (long long)ca * hw, nc = (long long)cb * hw;
    GRID_STRIDE(i, n) {
        long long bb = i / per, j = i - bb * per;
        out[i] = j < na ? a[bb * na + j] : c[bb * nc + (j - na)];
    }
}

extern "C" __global__ void concat_bwd(float* __restrict__ da, float* __restrict__ dc, const float* __restrict__ dout,
                                      int ca, int cb, int b, int hw) {
    long long per = (long long)(ca + cb) * hw, n = b * per, na = (long long)ca * hw, nc = (long long)cb * hw;
    GRID_STRIDE(i, n) {
        long long bb = i / per, j = i - bb * per;
        if (j < na) da[bb * na + j] += dout[i];
        else dc[bb * nc + (j - na)] += dout[i];
    }
}
