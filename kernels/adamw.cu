// adamw.cu: fused AdamW + EMA over the flat f32 parameter buffer (src/nn/optim.rs).
// The host computes the step's scalars (learning rate, bias corrections, clip scale from
// the global gradient norm, see reduce.cu) and passes them; per element:
//   g = grad·gs;  m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²;
//   p = p·shrink − step_size·m / (√v·inv_sqrt_bc2 + ε),  shrink = 1 − lr·wd where decays[i];
//   ema = d·ema + (1−d)·p.
extern "C" __global__ void adamw_ema(float* __restrict__ params, float* __restrict__ m, float* __restrict__ v,
                                     float* __restrict__ ema, const float* __restrict__ grads,
                                     const unsigned char* __restrict__ decays, long long n, float b1, float b2,
                                     float gs, float step_size, float inv_sqrt_bc2, float eps, float shrink_decay,
                                     float ema_decay) {
    float ob1 = 1.0f - b1, ob2 = 1.0f - b2, oed = 1.0f - ema_decay;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        float g = grads[i] * gs;
        float mi = b1 * m[i] + ob1 * g;
        float vi = b2 * v[i] + ob2 * g * g;
        m[i] = mi;
        v[i] = vi;
        float shrink = decays[i] ? shrink_decay : 1.0f;
        float p = params[i] * shrink - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
        params[i] = p;
        ema[i] = ema_decay * ema[i] + oed * p;
    }
}
