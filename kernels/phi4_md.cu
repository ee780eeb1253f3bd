// phi4_md.cu: molecular dynamics of 2-D real φ⁴ for many HMC chains at once (f64).
//
// Layout: field[c * V + t * lx + x] for chain c, site (t, x), V = lt * lx (row-major,
// as on the CPU). Action S = Σ_x [−2h Σ_μ φ_x φ_{x+μ} + q φ_x² + λ φ_x⁴], so
//   ∂S/∂φ_x = −2h Σ_μ (φ_{x+μ} + φ_{x−μ}) + 2q φ_x + 4λ φ_x³.
// Each chain has its own step size dt[c] (trajectory-length jitter); a kernel argument
// `coef` scales it, e.g. ½ for leapfrog's first half kick, λ_Omelyan, 1 − 2λ, ...
//
// An MD step is one fused launch of `phi4_kick_drift`: the kick at a site needs only the
// old field, and the drift of that site only its own new momentum, so
//   mom_x ← mom_x − ε ∂S/∂φ_x(φ_in);  φ_out_x ← φ_in_x + δ mom_x
// is race-free with φ ping-ponged between two buffers and mom updated in place.
// Leapfrog K(½) [D K]… is written [K D]^n K; Omelyan K(λ) D(½) K(1−2λ) D(½) K(2λ)… likewise.
// Momenta and the Metropolis restore are every theory's: hmc.cu.

__device__ __forceinline__ double phi4_dsdphi_eps(const double* __restrict__ p, int s, int lt, int lx, double a,
                                                  double b, double c) {
    int t = s / lx, x = s - t * lx;
    int tu = (t + 1 == lt) ? 0 : t + 1;
    int td = (t == 0) ? lt - 1 : t - 1;
    int xr = (x + 1 == lx) ? 0 : x + 1;
    int xl = (x == 0) ? lx - 1 : x - 1;
    // Same summation order as the CPU kernel: up + down + left + right.
    double nb = p[tu * lx + x] + p[td * lx + x] + p[t * lx + xl] + p[t * lx + xr];
    double ph = p[s];
    return -a * nb + ph * (b + c * ph * ph);
}

// mom −= coef·dt[c] · ∂S/∂φ(phi)   (the closing kick of a trajectory).
extern "C" __global__ void phi4_kick(const double* __restrict__ phi, double* __restrict__ mom,
                                     const double* __restrict__ dt, double coef, long long n_chains, int lt, int lx,
                                     double hop, double quad, double lam) {
    long long v = (long long)lt * lx, n = n_chains * v;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long c = i / v;
        int s = (int)(i - c * v);
        double eps = coef * dt[c];
        mom[i] -= phi4_dsdphi_eps(phi + c * v, s, lt, lx, 2.0 * hop * eps, 2.0 * quad * eps, 4.0 * lam * eps);
    }
}

// Fused MD step: mom −= kcoef·dt[c]·∂S/∂φ(phi_in); phi_out = phi_in + dcoef·dt[c]·mom.
extern "C" __global__ void phi4_kick_drift(const double* __restrict__ phi_in, double* __restrict__ phi_out,
                                           double* __restrict__ mom, const double* __restrict__ dt, double kcoef,
                                           double dcoef, long long n_chains, int lt, int lx, double hop, double quad,
                                           double lam) {
    long long v = (long long)lt * lx, n = n_chains * v;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long c = i / v;
        int s = (int)(i - c * v);
        double d = dt[c], eps = kcoef * d;
        double p = mom[i] -
                   phi4_dsdphi_eps(phi_in + c * v, s, lt, lx, 2.0 * hop * eps, 2.0 * quad * eps, 4.0 * lam * eps);
        mom[i] = p;
        phi_out[i] = phi_in[i] + (dcoef * d) * p;
    }
}
