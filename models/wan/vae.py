"""Wan2.1 video VAE (WanVAE_) in PyTorch.

Written from the semantics in tests/conformance/wan2.1/README.md; parameter
names match Wan2.1_VAE.pth / .safetensors.  Two equivalent evaluation paths:
the official chunked one (encode frame 0 then 4-frame chunks, decode one
latent frame at a time, with a per-conv feature cache) and a full-sequence
one (every causal conv over the whole clip at once) that is faster to train.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["WanVAE_", "WAN_LATENT_MEAN", "WAN_LATENT_STD", "latent_scale"]

# the published 16-value latent statistics the WanVAE wrapper normalises with
WAN_LATENT_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                   0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
WAN_LATENT_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                  3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]
CACHE_T = 2


def latent_scale(device=None):
    """[mean, 1/std] as the WanVAE wrapper passes them (1/std in float32)."""
    mean = torch.tensor(WAN_LATENT_MEAN, dtype=torch.float32, device=device)
    std = torch.tensor(WAN_LATENT_STD, dtype=torch.float32, device=device)
    return [mean, 1.0 / std]


class _Cache:
    """Feature cache of the chunked path: one slot per causal conv / resample."""

    def __init__(self):
        self.feats = {}
        self.idx = 0

    def get(self):
        return self.feats.get(self.idx)


class CausalConv3d(nn.Conv3d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        p = self.padding
        # (w, w, h, h, 2*t front, 0 back): causal in time, symmetric in space
        self._padding = (p[2], p[2], p[1], p[1], 2 * p[0], 0)
        self.padding = (0, 0, 0)

    def forward(self, x, cache_x=None):
        pad = list(self._padding)
        if cache_x is not None and pad[4] > 0:
            x = torch.cat([cache_x.to(x.device), x], dim=2)
            pad[4] -= cache_x.shape[2]
        return super().forward(F.pad(x, pad))


def _cconv(layer, x, cache):
    """Causal conv with the chunked path's cache (last CACHE_T input frames)."""
    if cache is None:
        return layer(x)
    prev = cache.get()
    cx = x[:, :, -CACHE_T:].clone()
    if cx.shape[2] < CACHE_T and prev is not None:
        cx = torch.cat([prev[:, :, -1:], cx], dim=2)
    out = layer(x, prev)
    cache.feats[cache.idx] = cx
    cache.idx += 1
    return out


class RMS_norm(nn.Module):
    def __init__(self, dim, channel_first=True, images=True, bias=False):
        super().__init__()
        bdims = (1, 1) if images else (1, 1, 1)
        shape = (dim, *bdims) if channel_first else (dim,)
        self.channel_first = channel_first
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape)) if bias else 0.0

    def forward(self, x):
        # x / max(||x||_2, 1e-12) * sqrt(C) * gamma (F.normalize, not rsqrt(mean+eps))
        return F.normalize(x, dim=(1 if self.channel_first else -1)) * self.scale * self.gamma + self.bias


class Upsample(nn.Upsample):
    def forward(self, x):
        return super().forward(x.float()).type_as(x)


class Resample(nn.Module):
    def __init__(self, dim, mode):
        super().__init__()
        self.dim, self.mode = dim, mode
        if mode == "upsample2d" or mode == "upsample3d":
            self.resample = nn.Sequential(Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, dim // 2, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample2d" or mode == "downsample3d":
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))
        else:
            raise ValueError(mode)

    def _split2(self, y, b, c):
        # [b,2c,t,h,w] -> [b,c,2t,h,w]; first c channels are the earlier frame
        t, h, w = y.shape[2:]
        y = y.reshape(b, 2, c, t, h, w)
        return torch.stack((y[:, 0], y[:, 1]), 3).reshape(b, c, t * 2, h, w)

    def forward(self, x, cache=None, full=False):
        b, c = x.shape[:2]
        if self.mode == "upsample3d":
            if full:
                # frame 0 skips the temporal conv; later frames see zeros, never frame 0
                if x.shape[2] > 1:
                    x = torch.cat([x[:, :, :1], self._split2(self.time_conv(x[:, :, 1:]), b, c)], 2)
            elif cache is not None:
                prev = cache.get()
                if prev is None:
                    cache.feats[cache.idx] = "Rep"
                else:
                    cx = x[:, :, -CACHE_T:].clone()
                    if cx.shape[2] < 2:
                        first = torch.zeros_like(cx) if isinstance(prev, str) else prev[:, :, -1:]
                        cx = torch.cat([first, cx], dim=2)
                    y = self.time_conv(x) if isinstance(prev, str) else self.time_conv(x, prev)
                    cache.feats[cache.idx] = cx
                    x = self._split2(y, b, c)
                cache.idx += 1
        t = x.shape[2]
        y = self.resample(x.transpose(1, 2).flatten(0, 1))          # [(b t),c',h',w']
        x = y.unflatten(0, (b, t)).transpose(1, 2)                   # [b,c',t,h',w']
        if self.mode == "downsample3d":
            if full:
                # out = [y0, conv(y0,y1,y2), conv(y2,y3,y4), ...]
                if x.shape[2] > 1:
                    x = torch.cat([x[:, :, :1], self.time_conv(x)], 2)
            elif cache is not None:
                prev = cache.get()
                if prev is None:
                    cache.feats[cache.idx] = x.clone()
                else:
                    last = x[:, :, -1:].clone()
                    x = self.time_conv(torch.cat([prev[:, :, -1:], x], 2))
                    cache.feats[cache.idx] = last
                cache.idx += 1
        return x


class ResidualBlock(nn.Module):
    def __init__(self, in_dim, out_dim, dropout=0.0):
        super().__init__()
        self.residual = nn.Sequential(
            RMS_norm(in_dim, images=False), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMS_norm(out_dim, images=False), nn.SiLU(), nn.Dropout(dropout),
            CausalConv3d(out_dim, out_dim, 3, padding=1))
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x, cache=None, full=False):
        h = self.shortcut(x)
        for layer in self.residual:
            x = _cconv(layer, x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the h*w positions of each frame."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.norm = RMS_norm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.proj.weight)

    def forward(self, x, cache=None, full=False):
        idt = x
        b, c, t, h, w = x.shape
        x = self.norm(x.transpose(1, 2).flatten(0, 1))                  # [(b t),c,h,w]
        q, k, v = self.to_qkv(x).reshape(b * t, c * 3, h * w).transpose(1, 2).chunk(3, dim=-1)
        a = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * (c ** -0.5), dim=-1)
        x = torch.matmul(a, v).transpose(1, 2).reshape(b * t, c, h, w)
        x = self.proj(x).unflatten(0, (b, t)).transpose(1, 2)
        return x + idt


def _run(seq, x, cache, full):
    for layer in seq:
        if isinstance(layer, CausalConv3d):
            x = _cconv(layer, x, cache)
        elif isinstance(layer, (ResidualBlock, AttentionBlock, Resample)):
            x = layer(x, cache, full)
        else:
            x = layer(x)
    return x


class Encoder3d(nn.Module):
    def __init__(self, dim=128, z_dim=4, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
                 temperal_downsample=(True, True, False), dropout=0.0):
        super().__init__()
        dims = [dim * u for u in [1] + list(dim_mult)]
        scale = 1.0
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        down = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(num_res_blocks):
                down.append(ResidualBlock(in_dim, out_dim, dropout))
                if scale in attn_scales:
                    down.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                down.append(Resample(out_dim, "downsample3d" if temperal_downsample[i] else "downsample2d"))
                scale /= 2.0
        self.downsamples = nn.Sequential(*down)
        self.middle = nn.Sequential(ResidualBlock(out_dim, out_dim, dropout), AttentionBlock(out_dim),
                                    ResidualBlock(out_dim, out_dim, dropout))
        self.head = nn.Sequential(RMS_norm(out_dim, images=False), nn.SiLU(),
                                  CausalConv3d(out_dim, z_dim, 3, padding=1))

    def forward(self, x, cache=None, full=False):
        x = _cconv(self.conv1, x, cache)
        x = _run(self.downsamples, x, cache, full)
        x = _run(self.middle, x, cache, full)
        return _run(self.head, x, cache, full)


class Decoder3d(nn.Module):
    def __init__(self, dim=128, z_dim=4, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
                 temperal_upsample=(False, True, True), dropout=0.0):
        super().__init__()
        dim_mult = list(dim_mult)
        dims = [dim * u for u in [dim_mult[-1]] + dim_mult[::-1]]
        scale = 1.0 / 2 ** (len(dim_mult) - 2)
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0], dropout), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0], dropout))
        up = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i in (1, 2, 3):
                in_dim = in_dim // 2   # the previous Resample halved the channels
            for _ in range(num_res_blocks + 1):
                up.append(ResidualBlock(in_dim, out_dim, dropout))
                if scale in attn_scales:
                    up.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                up.append(Resample(out_dim, "upsample3d" if temperal_upsample[i] else "upsample2d"))
                scale *= 2.0
        self.upsamples = nn.Sequential(*up)
        self.head = nn.Sequential(RMS_norm(out_dim, images=False), nn.SiLU(),
                                  CausalConv3d(out_dim, 3, 3, padding=1))

    def forward(self, x, cache=None, full=False):
        x = _cconv(self.conv1, x, cache)
        x = _run(self.middle, x, cache, full)
        x = _run(self.upsamples, x, cache, full)
        return _run(self.head, x, cache, full)


class WanVAE_(nn.Module):
    def __init__(self, dim=128, z_dim=4, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
                 temperal_downsample=(True, True, False), dropout=0.0):
        super().__init__()
        self.dim, self.z_dim = dim, z_dim
        self.temperal_downsample = list(temperal_downsample)
        self.temperal_upsample = self.temperal_downsample[::-1]
        self.encoder = Encoder3d(dim, z_dim * 2, dim_mult, num_res_blocks, attn_scales,
                                 self.temperal_downsample, dropout)
        self.conv1 = CausalConv3d(z_dim * 2, z_dim * 2, 1)
        self.conv2 = CausalConv3d(z_dim, z_dim, 1)
        self.decoder = Decoder3d(dim, z_dim, dim_mult, num_res_blocks, attn_scales,
                                 self.temperal_upsample, dropout)

    def encode_raw(self, x, chunked=True):
        """video [B,3,T,H,W] (T = 1+4k, in [-1,1]) -> (mu_raw, log_var) [B,z,1+k,H/8,W/8]."""
        if chunked:
            cache = _Cache()
            outs = []
            t = x.shape[2]
            for i in range(1 + (t - 1) // 4):
                cache.idx = 0
                xi = x[:, :, :1] if i == 0 else x[:, :, 1 + 4 * (i - 1):1 + 4 * i]
                outs.append(self.encoder(xi, cache))
            out = torch.cat(outs, 2)
        else:
            out = self.encoder(x, None, full=True)
        mu, log_var = self.conv1(out).chunk(2, dim=1)
        return mu, log_var

    def encode(self, x, scale, chunked=True):
        mu, _ = self.encode_raw(x, chunked)
        return self.normalize(mu, scale)

    def normalize(self, mu, scale):
        return (mu - scale[0].view(1, -1, 1, 1, 1)) * scale[1].view(1, -1, 1, 1, 1)

    def decode_raw(self, z, chunked=True):
        """un-normalised latent [B,z,F,h,w] -> video [B,3,1+4(F-1),8h,8w] (not clamped)."""
        x = self.conv2(z)
        if not chunked:
            return self.decoder(x, None, full=True)
        cache = _Cache()
        outs = []
        for i in range(z.shape[2]):
            cache.idx = 0
            outs.append(self.decoder(x[:, :, i:i + 1], cache))
        return torch.cat(outs, 2)

    def decode(self, z, scale, chunked=True):
        z = z / scale[1].view(1, -1, 1, 1, 1) + scale[0].view(1, -1, 1, 1, 1)
        return self.decode_raw(z, chunked)
