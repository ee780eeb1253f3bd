#!/usr/bin/env python3
"""PyTorch reference of latdiff's periodic U-Net score network (src/nn/unet.rs), for timing
side by side with the Rust CPU / CUDA paths on the same GPU machine.

Architecture (same as the Rust plan, same parameter shapes):
  embedding: Gaussian Fourier features [sin, cos](2π f log σ) (fixed f ~ N(0, scale²))
             -> dense(2F -> E) -> SiLU -> dense(E -> E)
  stem:      periodic conv3x3 (1 -> c0)
  block:     h -> GroupNorm -> FiLM(1 + scale, shift from a dense of the embedding)
             -> SiLU -> periodic conv3x3 -> + skip(h)   (skip = 1x1 conv if channels change)
  down path: `blocks` blocks per level, 2x2 average pool between levels
  up path:   nearest x2 upsample, concat [up, skip of that level], `blocks` blocks
  head:      GroupNorm -> SiLU -> periodic conv3x3 (-> 1 channel)
The DSM loss is the one of src/diffusion/objective.rs: x_in = c_in(σ)(φ0 + σ z),
ℓ_b = Σ_x (F(x_in, σ) + z)², L = mean_b ℓ_b.

  python3 benches/pytorch_unet.py --arch dmassq --lattice 64 --batch 64 [--tf32] [--compile]
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = {
    "tiny": dict(channels=[8, 16], blocks=1, groups=4, embed=16, fourier=8),
    "small": dict(channels=[16, 32, 64], blocks=2, groups=8, embed=64, fourier=16),
    "dmassq": dict(channels=[32, 64, 128, 256], blocks=1, groups=8, embed=32, fourier=16),
}


def pconv(cin, cout, k):
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="circular" if k > 1 else "zeros")


class Block(nn.Module):
    def __init__(self, cin, cout, embed, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, cin, eps=1e-5)
        self.film = nn.Linear(embed, 2 * cin)
        self.conv = pconv(cin, cout, 3)
        self.skip = pconv(cin, cout, 1) if cin != cout else None

    def forward(self, h, emb):
        scale, shift = self.film(emb).chunk(2, dim=1)
        a = self.norm(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        y = self.conv(F.silu(a))
        return y + (h if self.skip is None else self.skip(h))


class UNet(nn.Module):
    def __init__(self, channels, blocks, groups, embed, fourier, fourier_scale=1.0, seed=0x5EED):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", fourier_scale * torch.randn(fourier, generator=g))
        self.embed0 = nn.Linear(2 * fourier, embed)
        self.embed1 = nn.Linear(embed, embed)
        self.stem = pconv(1, channels[0], 3)
        self.down = nn.ModuleList()
        c = channels[0]
        for cl in channels:
            self.down.append(nn.ModuleList([Block(c if j == 0 else cl, cl, embed, groups) for j in range(blocks)]))
            c = cl
        self.up = nn.ModuleList()
        for l in reversed(range(len(channels) - 1)):
            cin = c + channels[l]
            self.up.append(nn.ModuleList([Block(cin if j == 0 else channels[l], channels[l], embed, groups)
                                          for j in range(blocks)]))
            c = channels[l]
        self.head_norm = nn.GroupNorm(groups, c, eps=1e-5)
        self.head = pconv(c, 1, 3)

    def forward(self, x, sigma):
        a = 2 * math.pi * self.freqs[None, :] * torch.log(sigma)[:, None]
        emb = self.embed1(F.silu(self.embed0(torch.cat([a.sin(), a.cos()], dim=1))))
        h = self.stem(x)
        skips = []
        for l, blocks in enumerate(self.down):
            for b in blocks:
                h = b(h, emb)
            if l + 1 < len(self.down):
                skips.append(h)
                h = F.avg_pool2d(h, 2)
        for blocks in self.up:
            h = torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), skips.pop()], dim=1)
            for b in blocks:
                h = b(h, emb)
        return self.head(F.silu(self.head_norm(h)))


def dsm_loss(net, phi0, sigma, sigma_data=1.0):
    z = torch.randn_like(phi0)
    c_in = 1.0 / torch.sqrt(sigma_data**2 + sigma**2)
    x_in = c_in[:, None, None, None] * (phi0 + sigma[:, None, None, None] * z)
    r = net(x_in, sigma) + z
    return (r * r).sum(dim=(1, 2, 3)).mean()


def timeit(fn, iters, sync):
    for _ in range(3):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t0) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="dmassq", choices=ARCHS)
    ap.add_argument("--lattice", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tf32", action="store_true", help="TF32 tensor cores for convolutions / matmuls")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    dev = torch.device(args.device)
    net = UNet(**ARCHS[args.arch]).to(dev)
    if args.compile:
        net = torch.compile(net)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    n_params = sum(p.numel() for p in net.parameters())
    L, B = args.lattice, args.batch
    phi0 = torch.randn(B, 1, L, L, device=dev)
    sigma = torch.exp(torch.empty(B, device=dev).uniform_(math.log(0.01), math.log(10.0)))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    @torch.no_grad()
    def fwd():
        net(phi0, sigma)

    def step():
        opt.zero_grad(set_to_none=True)
        dsm_loss(net, phi0, sigma).backward()
        opt.step()

    tf = timeit(fwd, args.iters, sync)
    ts = timeit(step, args.iters, sync)
    print(f"pytorch {torch.__version__} on {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}), "
          f"arch {args.arch} ({n_params} params), L={L}, batch {B}, tf32={args.tf32}, compile={args.compile}")
    print(f"forward:        {1e3 * tf:8.3f} ms/batch  {B / tf:10.1f} configs/s")
    print(f"train step:     {1e3 * ts:8.3f} ms/batch  {B / ts:10.1f} configs/s  (DSM loss + backward + AdamW)")


if __name__ == "__main__":
    main()
