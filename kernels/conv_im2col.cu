// conv_im2col.cu: periodic k×k convolution as im2col + one cuBLAS GEMM for the batch (f32).
// Same layouts as src/nn/conv.rs: activations NCHW; the column matrix is [Cin·k·k, B·H·W],
//   col[(ci·k + ky)·k + kx][b·HW + y·W + x] = inp[b, ci, (y+ky−p) mod H, (x+kx−p) mod W],
// p = k/2; the GEMM output tmp is [Cout, B·H·W]. Consecutive threads take consecutive
// columns, so col writes / tmp reads are coalesced and input reads nearly so.

__device__ __forceinline__ int wrap(int a, int n) {
    a %= n;
    return a < 0 ? a + n : a;
}

extern "C" __global__ void im2col_periodic(float* __restrict__ col, const float* __restrict__ inp, int b, int cin,
                                           int h, int w, int k) {
    long long hw = (long long)h * w, ncols = b * hw, n = (long long)cin * k * k * ncols;
    int p = k / 2;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long r = i / ncols, j = i - r * ncols;
        int ci = (int)(r / (k * k)), ky = (int)((r / k) % k), kx = (int)(r % k);
        long long bb = j / hw;
        int yx = (int)(j - bb * hw), y = yx / w, x = yx - y * w;
        int yy = wrap(y + ky - p, h), xx = wrap(x + kx - p, w);
        col[i] = inp[(bb * cin + ci) * hw + (long long)yy * w + xx];
    }
}

// Adjoint of im2col, accumulated, as a gather (no atomics): each input pixel sums the k·k
// column entries that read it. dinp[b, ci, Y, X] += Σ_{ky,kx} dcol[r][b·HW + oy·W + ox],
// oy = (Y − ky + p) mod H, ox = (X − kx + p) mod W.
extern "C" __global__ void col2im_periodic_add(float* __restrict__ dinp, const float* __restrict__ dcol, int b,
                                               int cin, int h, int w, int k) {
    long long hw = (long long)h * w, ncols = b * hw, n = (long long)b * cin * hw;
    int p = k / 2;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long plane = i / hw;
        int yx = (int)(i - plane * hw), Y = yx / w, X = yx - Y * w;
        long long bb = plane / cin;
        int ci = (int)(plane - bb * cin);
        float acc = 0.0f;
        for (int ky = 0; ky < k; ++ky) {
            int oy = wrap(Y - ky + p, h);
            for (int kx = 0; kx < k; ++kx) {
                int ox = wrap(X - kx + p, w);
                long long r = ((long long)ci * k + ky) * k + kx;
                acc += dcol[r * ncols + bb * hw + (long long)oy * w + ox];
            }
        }
        dinp[i] += acc;
    }
}

// out[b, co, s] = tmp[co, b·HW + s] + bias[co]   (GEMM result back to NCHW, bias fused).
extern "C" __global__ void cn_to_nchw_bias(float* __restrict__ out, const float* __restrict__ tmp,
                                           const float* __restrict__ bias, int b, int c, int hw) {
    long long n = (long long)b * c * hw, ncols = (long long)b * hw;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long plane = i / hw;
        int s = (int)(i - plane * hw);
        long long bb = plane / c;
        int co = (int)(plane - bb * c);
        out[i] = tmp[co * ncols + bb * hw + s] + bias[co];
    }
}

// dst[ch, b·HW + s] = src[b, ch, s]   (NCHW gradient to the GEMM's [C, B·HW] layout).
extern "C" __global__ void nchw_to_cn(float* __restrict__ dst, const float* __restrict__ src, int b, int c, int hw) {
    long long n = (long long)b * c * hw, ncols = (long long)b * hw;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long ch = i / ncols, j = i - ch * ncols;
        long long bb = j / hw;
        int s = (int)(j - bb * hw);
        dst[i] = src[(bb * c + ch) * hw + s];
    }
}
