// hmc.cu: the HMC kernels every theory shares (f64), on a field of `dof` values per chain
// stored chain-major: field[c * dof + i]. φ⁴ has dof = V sites, U(1) dof = 2V link angles;
// both draw unit Gaussian momenta (flat metric on R^V and on the torus) and restore a
// rejected chain's field by copying it back.
#include "philox.cuh"

// Gaussian momenta keyed by (seed, chain0 + c, traj): thread j of chain c fills entries
// 2j, 2j+1 (the host's philox::normals, so the parity tests can compare them bit for bit).
extern "C" __global__ void hmc_momenta(double* __restrict__ mom, long long n_chains, int dof, unsigned int key0,
                                       unsigned int key1, unsigned int chain0, unsigned int traj) {
    long long pairs = (dof + 1) / 2, n = n_chains * pairs;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        long long c = i / pairs;
        int j = (int)(i - c * pairs);
        philox4 ctr = {(unsigned int)j, chain0 + (unsigned int)c, traj, PHILOX_HMC_MOMENTA};
        double z0, z1;
        philox_normal2(philox4x32_10(ctr, key0, key1), &z0, &z1);
        double* m = mom + c * dof;
        m[2 * j] = z0;
        if (2 * j + 1 < dof) m[2 * j + 1] = z1;
    }
}

// Metropolis rejection: chains with accept[c] == 0 get their pre-trajectory field back.
extern "C" __global__ void hmc_restore(double* __restrict__ field, const double* __restrict__ field_old,
                                       const int* __restrict__ accept, long long n_chains, int dof) {
    long long n = n_chains * dof;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        if (!accept[i / dof]) field[i] = field_old[i];
    }
}
