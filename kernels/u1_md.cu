// u1_md.cu: molecular dynamics and energies of 2-D compact U(1) gauge theory (Wilson
// action) for many HMC chains at once (f64).
//
// Layout as on the CPU (theory/u1.rs): chain c holds 2V link angles, theta[c * 2V + μ V + s]
// with site s = t * lx + x, μ = 0 the link in the t direction, μ = 1 in the x direction,
// angles in (−π, π]. Plaquette angle
//   θ_P(t, x) = θ_0(t, x) + θ_1(t+1, x) − θ_0(t, x+1) − θ_1(t, x),   S = −β Σ_P cos θ_P,
// so each link enters two plaquettes with opposite orientation:
//   ∂S/∂θ_0(t, x) = β[sin θ_P(t, x) − sin θ_P(t, x−1)],
//   ∂S/∂θ_1(t, x) = β[sin θ_P(t−1, x) − sin θ_P(t, x)].
// One thread per site updates the site's two links: three plaquettes (here, left, below)
// give both forces, 1.5 sines per link instead of 2 for a thread per link.
//
// An MD step is one fused launch of `u1_kick_drift` (kick with the old angles, then the
// drift θ ← wrap(θ + δ p) of the same links), race-free with θ ping-ponged between two
// buffers as in phi4_md.cu; `dt[c]` and the coefficients as there. Momenta and the
// Metropolis restore are every theory's: hmc.cu.
#include "block_reduce.cuh"

#define U1_PI 3.141592653589793
#define U1_TWO_PI 6.283185307179586

__device__ __forceinline__ int u1_next(int i, int n) { return (i + 1 == n) ? 0 : i + 1; }
__device__ __forceinline__ int u1_prev(int i, int n) { return (i == 0) ? n - 1 : i - 1; }

// θ_P(t, x), unwrapped, summed in the CPU's order (U1::for_each_plaquette).
__device__ __forceinline__ double u1_plaquette(const double* __restrict__ th, int v, int lt, int lx, int t, int x) {
    int s = t * lx + x;
    return th[s] + th[v + u1_next(t, lt) * lx + x] - th[t * lx + u1_next(x, lx)] - th[v + s];
}

// The representative in (−π, π], as theory::manifold::wrap_angle. The product is rounded
// on its own (no fused multiply-add), as on the CPU, so that both put an angle on the same
// side of ±π.
__device__ __forceinline__ double u1_wrap(double a) {
    double r = a - __dmul_rn(U1_TWO_PI, round(a / U1_TWO_PI));
    if (r <= -U1_PI) return r + U1_TWO_PI;
    if (r > U1_PI) return r - U1_TWO_PI;
    return r;
}

// ∂S/∂θ of the two links at (t, x): d0 for θ_0, d1 for θ_1.
__device__ __forceinline__ void u1_link_derivs(const double* __restrict__ th, int v, int lt, int lx, int t, int x,
                                               double beta, double* d0, double* d1) {
    double here = beta * sin(u1_plaquette(th, v, lt, lx, t, x));
    double left = beta * sin(u1_plaquette(th, v, lt, lx, t, u1_prev(x, lx)));
    double below = beta * sin(u1_plaquette(th, v, lt, lx, u1_prev(t, lt), x));
    *d0 = here - left;
    *d1 = below - here;
}

// mom −= coef·dt[c] · ∂S/∂θ(theta)   (the closing kick of a trajectory).
extern "C" __global__ void u1_kick(const double* __restrict__ theta, double* __restrict__ mom,
                                   const double* __restrict__ dt, double coef, long long n_chains, int lt, int lx,
                                   double beta) {
    long long v = (long long)lt * lx, n = n_chains * v;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long c = i / v;
        int s = (int)(i - c * v), t = s / lx, x = s - t * lx;
        double d0, d1;
        u1_link_derivs(theta + 2 * c * v, (int)v, lt, lx, t, x, beta, &d0, &d1);
        double eps = coef * dt[c];
        long long l0 = 2 * c * v + s;
        mom[l0] -= eps * d0;
        mom[l0 + v] -= eps * d1;
    }
}

// Fused MD step: mom −= kcoef·dt[c]·∂S/∂θ(theta_in); theta_out = wrap(theta_in + dcoef·dt[c]·mom).
extern "C" __global__ void u1_kick_drift(const double* __restrict__ theta_in, double* __restrict__ theta_out,
                                         double* __restrict__ mom, const double* __restrict__ dt, double kcoef,
                                         double dcoef, long long n_chains, int lt, int lx, double beta) {
    long long v = (long long)lt * lx, n = n_chains * v;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long c = i / v;
        int s = (int)(i - c * v), t = s / lx, x = s - t * lx;
        double d0, d1;
        u1_link_derivs(theta_in + 2 * c * v, (int)v, lt, lx, t, x, beta, &d0, &d1);
        double d = dt[c], eps = kcoef * d, step = dcoef * d;
        long long l0 = 2 * c * v + s, l1 = l0 + v;
        double p0 = mom[l0] - eps * d0, p1 = mom[l1] - eps * d1;
        mom[l0] = p0;
        mom[l1] = p1;
        theta_out[l0] = u1_wrap(theta_in[l0] + step * p0);
        theta_out[l1] = u1_wrap(theta_in[l1] + step * p1);
    }
}

// HMC energies, one block per chain: out[3c] = S = −β Σ_P cos θ_P, out[3c+1] = Q =
// (1/2π) Σ_P wrap(θ_P) (the thermalisation monitor and the stored charge, as
// U1::action_and_monitor), out[3c+2] = ½ Σ p² over the 2V links.
extern "C" __global__ void u1_energy(const double* __restrict__ theta, const double* __restrict__ mom,
                                     double* __restrict__ out, int lt, int lx, double beta) {
    long long c = blockIdx.x;
    int v = lt * lx;
    const double* th = theta + 2 * c * v;
    const double* m = mom + 2 * c * v;
    double cos_sum = 0.0, q = 0.0, k = 0.0;
    for (int s = threadIdx.x; s < v; s += blockDim.x) {
        int t = s / lx, x = s - t * lx;
        double a = u1_plaquette(th, v, lt, lx, t, x);
        cos_sum += cos(a);
        q += u1_wrap(a);
        k += m[s] * m[s] + m[v + s] * m[v + s];
    }
    cos_sum = block_sum(cos_sum);
    q = block_sum(q);
    k = block_sum(k);
    if (threadIdx.x == 0) {
        out[3 * c] = -beta * cos_sum;
        out[3 * c + 1] = q / U1_TWO_PI;
        out[3 * c + 2] = 0.5 * k;
    }
}
