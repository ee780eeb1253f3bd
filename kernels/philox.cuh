// philox.cuh: counter-based Philox4x32-10 (Salmon et al., SC'11, Random123) and the
// uniform / normal draws built on it. Shared by every kernel that needs random numbers;
// the Rust loader (src/backend/kernels.rs) replaces `#include "philox.cuh"` with this text.
//
// A draw is a pure function of (key, counter): key = the 64-bit run seed, counter =
// (item within the stream, stream index (chain / sample), step (trajectory / σ level),
// purpose tag). Results therefore do not depend on the launch configuration. The same
// function is implemented in src/backend/philox.rs; the parity tests compare the two.
#pragma once

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// Purpose tags (4th counter word); mirrored in src/backend/philox.rs.
#define PHILOX_HMC_MOMENTA 0u
#define PHILOX_HMC_ACCEPT 1u
#define PHILOX_SDE_NOISE 2u

struct philox4 { unsigned int x, y, z, w; };

__device__ __forceinline__ philox4 philox4x32_10(philox4 c, unsigned int k0, unsigned int k1) {
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        unsigned int hi0 = __umulhi(PHILOX_M0, c.x), lo0 = PHILOX_M0 * c.x;
        unsigned int hi1 = __umulhi(PHILOX_M1, c.z), lo1 = PHILOX_M1 * c.z;
        philox4 n;
        n.x = hi1 ^ c.y ^ k0;
        n.y = lo1;
        n.z = hi0 ^ c.w ^ k1;
        n.w = lo0;
        c = n;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    return c;
}

// (hi, lo) 32-bit words -> double uniform in (0, 1): 53 bits, centred in its bin.
__device__ __forceinline__ double philox_u01(unsigned int hi, unsigned int lo) {
    unsigned long long b = (((unsigned long long)hi << 32) | lo) >> 11;
    return ((double)b + 0.5) * 1.1102230246251565e-16;  // 2^-53
}

// Two independent standard normals from one Philox block (Box-Muller, double precision).
__device__ __forceinline__ void philox_normal2(philox4 r, double* z0, double* z1) {
    double u1 = philox_u01(r.x, r.y);
    double u2 = philox_u01(r.z, r.w);
    double rad = sqrt(-2.0 * log(u1));
    double s, c;
    sincospi(2.0 * u2, &s, &c);
    *z0 = rad * c;
    *z1 = rad * s;
}
