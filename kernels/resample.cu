// resample.cu: resolution changes by 2 (f32), as src/nn/sample.rs: 2×2 average pooling
// down, nearest-neighbour up. `bc` = B·C planes of h×w (the input size of each op).
// One thread per output element of the forward op / per input-gradient element of the
// backward op, so nothing is written twice and no atomics are needed.

extern "C" __global__ void down_fwd(float* __restrict__ out, const float* __restrict__ inp, long long bc, int h,
                                    int w) {
    int ho = h / 2, wo = w / 2;
    long long n = bc * ho * wo;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long p = i / ((long long)ho * wo);
        int r = (int)(i - p * ho * wo), y = r / wo, x = r - y * wo;
        const float* a = inp + p * h * w + (2 * y) * w + 2 * x;
        out[i] = 0.25f * (a[0] + a[1] + a[w] + a[w + 1]);
    }
}

// dinp[p, y, x] += ¼ dout[p, y/2, x/2]
extern "C" __global__ void down_bwd(float* __restrict__ dinp, const float* __restrict__ dout, long long bc, int h,
                                    int w) {
    int wo = w / 2;
    long long n = bc * h * w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long p = i / ((long long)h * w);
        int r = (int)(i - p * h * w), y = r / w, x = r - y * w;
        dinp[i] += 0.25f * dout[p * (h / 2) * wo + (y / 2) * wo + x / 2];
    }
}

// out[p, y, x] = inp[p, y/2, x/2], out is 2h × 2w.
extern "C" __global__ void up_fwd(float* __restrict__ out, const float* __restrict__ inp, long long bc, int h, int w) {
    int ho = 2 * h, wo = 2 * w;
    long long n = bc * ho * wo;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long p = i / ((long long)ho * wo);
        int r = (int)(i - p * ho * wo), y = r / wo, x = r - y * wo;
        out[i] = inp[p * h * w + (y / 2) * w + x / 2];
    }
}

// dinp[p, y, x] += Σ of the 2×2 block of dout it was copied to.
extern "C" __global__ void up_bwd(float* __restrict__ dinp, const float* __restrict__ dout, long long bc, int h,
                                  int w) {
    int wo = 2 * w;
    long long n = bc * h * w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long p = i / ((long long)h * w);
        int r = (int)(i - p * h * w), y = r / w, x = r - y * w;
        const float* g = dout + p * 4 * h * w + (2 * y) * wo + 2 * x;
        dinp[i] += g[0] + g[1] + g[wo] + g[wo + 1];
    }
}
