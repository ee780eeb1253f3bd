// reduce.cu: reductions. One block per row (chain / sample / channel), grid-stride inside.
#include "block_reduce.cuh"

// HMC energies, one block per chain: out[3c] = S(φ_c), out[3c+1] = Σφ_c, out[3c+2] = ½Σp_c².
// S uses the forward links only (each bond once), like Phi4::action_and_sum on the CPU.
extern "C" __global__ void phi4_energy(const double* __restrict__ phi, const double* __restrict__ mom,
                                       double* __restrict__ out, int lt, int lx, double hop, double quad,
                                       double lam) {
    long long c = blockIdx.x;
    int v = lt * lx;
    const double* p = phi + c * v;
    const double* m = mom + c * v;
    double s = 0.0, sum = 0.0, k = 0.0;
    for (int i = threadIdx.x; i < v; i += blockDim.x) {
        int t = i / lx, x = i - t * lx;
        int tu = (t + 1 == lt) ? 0 : t + 1;
        int xr = (x + 1 == lx) ? 0 : x + 1;
        double ph = p[i], p2 = ph * ph;
        s += -2.0 * hop * ph * (p[tu * lx + x] + p[t * lx + xr]) + quad * p2 + lam * p2 * p2;
        sum += ph;
        k += m[i] * m[i];
    }
    s = block_sum(s);
    sum = block_sum(sum);
    k = block_sum(k);
    if (threadIdx.x == 0) {
        out[3 * c] = s;
        out[3 * c + 1] = sum;
        out[3 * c + 2] = 0.5 * k;
    }
}

// Partial sums of squares of an f32 vector, accumulated in f64: partial[blockIdx.x].
// The host adds the (few) partials: the global gradient norm for clipping.
extern "C" __global__ void sum_sq_partial_f32(const float* __restrict__ x, long long n, double* __restrict__ partial) {
    double s = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        double v = x[i];
        s += v * v;
    }
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out[r] (+)= Σ_j in[r * cols + j], one block per row (conv bias gradients).
extern "C" __global__ void row_sum_f32(float* __restrict__ out, const float* __restrict__ in, long long cols,
                                       int accumulate) {
    long long r = blockIdx.x;
    double s = 0.0;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += in[r * cols + j];
    s = block_sum(s);
    if (threadIdx.x == 0) out[r] = (accumulate ? out[r] : 0.0f) + (float)s;
}
