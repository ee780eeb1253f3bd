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

Independent numerical reference (llm.c style) for tests/pytorch_reference.rs: the tiny preset
in float64 with random weights (stored as f32 values), its DSM loss, network output and
parameter gradients, and the parameter count of every preset:

  python3 benches/pytorch_unet.py --write-reference tests/data/unet_tiny_reference.bin

The Rust test needs no PyTorch: the committed file is the artefact.
"""
import argparse
import json
import math
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = {
    "tiny": dict(channels=[8, 16], blocks=1, groups=4, embed=16, fourier=8),
    "small": dict(channels=[16, 32, 64], blocks=2, groups=8, embed=64, fourier=16),
    "dmassq": dict(channels=[32, 64, 128, 256], blocks=1, groups=8, embed=32, fourier=16),
    "local": dict(channels=[32, 64], blocks=1, groups=1, embed=32, fourier=16, norm=False),
    "tiny-local": dict(channels=[8, 16], blocks=1, groups=4, embed=16, fourier=8, norm=False),
}

# Arch::tiny()'s fixed Fourier frequencies: latdiff draws them from its own generator
# (xoshiro256++, seed 0x5eed), which torch cannot reproduce; tests/pytorch_reference.rs
# checks that they equal the Rust network's and prints the new values if they ever change.
RUST_TINY_FREQS = [0.44904587943356017, 1.7991644391841404, -1.7638359307407683, -0.34225604031773654,
                   -0.08140033018196592, -0.2824955131532, -0.4164702112553901, 0.5557928857520896]


def pconv(cin, cout, k):
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="circular" if k > 1 else "zeros")


class Block(nn.Module):
    def __init__(self, cin, cout, embed, groups, norm=True):
        super().__init__()
        self.norm = nn.GroupNorm(groups, cin, eps=1e-5) if norm else nn.Identity()
        self.film = nn.Linear(embed, 2 * cin)
        self.conv = pconv(cin, cout, 3)
        self.skip = pconv(cin, cout, 1) if cin != cout else None

    def forward(self, h, emb):
        scale, shift = self.film(emb).chunk(2, dim=1)
        a = self.norm(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        y = self.conv(F.silu(a))
        return y + (h if self.skip is None else self.skip(h))


class UNet(nn.Module):
    def __init__(self, channels, blocks, groups, embed, fourier, norm=True, fourier_scale=1.0, seed=0x5EED):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", fourier_scale * torch.randn(fourier, generator=g))
        self.embed0 = nn.Linear(2 * fourier, embed)
        self.embed1 = nn.Linear(embed, embed)
        self.stem = pconv(1, channels[0], 3)
        self.down = nn.ModuleList()
        c = channels[0]
        for cl in channels:
            self.down.append(nn.ModuleList([Block(c if j == 0 else cl, cl, embed, groups, norm) for j in range(blocks)]))
            c = cl
        self.up = nn.ModuleList()
        for l in reversed(range(len(channels) - 1)):
            cin = c + channels[l]
            self.up.append(nn.ModuleList([Block(cin if j == 0 else channels[l], channels[l], embed, groups, norm)
                                          for j in range(blocks)]))
            c = channels[l]
        self.head_norm = nn.GroupNorm(groups, c, eps=1e-5) if norm else nn.Identity()
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


def dsm_loss(net, phi0, sigma, sigma_data=1.0, z=None):
    z = torch.randn_like(phi0) if z is None else z
    c_in = 1.0 / torch.sqrt(sigma_data**2 + sigma**2)
    x_in = c_in[:, None, None, None] * (phi0 + sigma[:, None, None, None] * z)
    r = net(x_in, sigma) + z
    return (r * r).sum(dim=(1, 2, 3)).mean()


def timeit(fn, iters, sync, seconds=None):
    """Seconds per call: `iters` calls, or as many as fit in `seconds` (at least 3)."""
    for _ in range(3):
        fn()
    sync()
    t0 = time.perf_counter()
    n = 0
    while n < 3 or (n < iters if seconds is None else time.perf_counter() - t0 < seconds):
        fn()
        n += 1
    sync()
    return (time.perf_counter() - t0) / n


def write_reference(path, batch=3, lattice=8):
    """Header line (JSON) + raw little-endian arrays; see tests/pytorch_reference.rs."""
    torch.manual_seed(20261202)
    net = UNet(**ARCHS["tiny"]).double()
    assert RUST_TINY_FREQS is not None
    net.freqs.copy_(torch.tensor(RUST_TINY_FREQS, dtype=torch.float64))
    with torch.no_grad():
        for p in net.parameters():
            # O(1/sqrt(fan-in)) weights and non-trivial GroupNorm γ, β and biases, rounded
            # to f32 so that the Rust f32 and f64 paths see the same values.
            fan = p[0].numel() if p.dim() > 1 else 4
            p.copy_(torch.randn(p.shape, dtype=torch.float64) / math.sqrt(fan))
            if p.dim() == 1:
                p.mul_(0.5)
            p.copy_(p.float().double())
    shape = (batch, 1, lattice, lattice)
    phi0 = torch.randn(shape, dtype=torch.float64).float().double()
    z = torch.randn(shape, dtype=torch.float64).float().double()
    sigma = torch.tensor([0.02, 0.7, 6.0][:batch], dtype=torch.float64).float().double()
    c_in = 1.0 / torch.sqrt(1.0 + sigma**2)
    out = net(c_in[:, None, None, None] * (phi0 + sigma[:, None, None, None] * z), sigma)
    loss = dsm_loss(net, phi0, sigma, z=z)
    net.zero_grad()
    loss.backward()
    named = list(net.named_parameters())
    counts = {a: sum(p.numel() for p in UNet(**kw).parameters()) for a, kw in ARCHS.items()}
    arrays = [
        ("params", "f32", torch.cat([p.detach().flatten() for _, p in named])),
        ("phi0", "f32", phi0.flatten()),
        ("z", "f32", z.flatten()),
        ("sigma", "f32", sigma),
        ("output", "f64", out.detach().flatten()),
        ("grad", "f64", torch.cat([p.grad.flatten() for _, p in named])),
    ]
    header = dict(
        torch=torch.__version__, arch="tiny", batch=batch, lattice=lattice, loss=loss.item(),
        freqs=RUST_TINY_FREQS, param_counts=counts,
        layout=[dict(name=n, shape=list(p.shape)) for n, p in named],
        arrays=[dict(name=n, dtype=t, len=a.numel()) for n, t, a in arrays],
    )
    with open(path, "wb") as f:
        f.write((json.dumps(header) + "\n").encode())
        for _, t, a in arrays:
            vals = a.tolist()
            f.write(struct.pack(f"<{len(vals)}{'f' if t == 'f32' else 'd'}", *vals))
    print(f"wrote {path}: loss {loss.item():.12g}, parameter counts {counts}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-reference", metavar="PATH", help="write the tiny preset's reference file and exit")
    ap.add_argument("--arch", default="dmassq", choices=ARCHS)
    ap.add_argument("--lattice", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tf32", action="store_true", help="TF32 tensor cores for convolutions / matmuls")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--what", default="forward,train", help="forward, train or both (comma-separated)")
    ap.add_argument("--seconds", type=float, help="time each measurement for this long instead of --iters calls")
    ap.add_argument("--json", action="store_true", help="one JSON line")
    args = ap.parse_args()
    if args.write_reference:
        write_reference(args.write_reference)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
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

    what = args.what.split(",")
    tf = timeit(fwd, args.iters, sync, args.seconds) if "forward" in what else None
    ts = timeit(step, args.iters, sync, args.seconds) if "train" in what else None
    if args.json:
        print(json.dumps(dict(torch=torch.__version__, arch=args.arch, params=n_params, lattice=L, batch=B,
                              threads=torch.get_num_threads(), forward_per_s=tf and B / tf,
                              train_samples_per_s=ts and B / ts)))
        return
    print(f"pytorch {torch.__version__} on {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}), "
          f"arch {args.arch} ({n_params} params), L={L}, batch {B}, tf32={args.tf32}, compile={args.compile}, "
          f"threads {torch.get_num_threads()}")
    if tf:
        print(f"forward:        {1e3 * tf:8.3f} ms/batch  {B / tf:10.1f} configs/s")
    if ts:
        print(f"train step:     {1e3 * ts:8.3f} ms/batch  {B / ts:10.1f} configs/s  (DSM loss + backward + AdamW)")


if __name__ == "__main__":
    main()
