"""Wan text-to-video DiT (WanModel) in PyTorch: Wan2.1 model_type t2v and
Wan2.2 model_type ti2v (TI2V-5B: in_dim = out_dim = 48, per-token timesteps).

Written from the semantics in tests/conformance/wan2.1/README.md and
tests/conformance/wan2.2/README.md.  Parameter names match the official
checkpoints (diffusion_pytorch_model*.safetensors).  Batched: every sample in
a batch has the same latent shape, contexts are padded to text_len by the
caller or by forward().

Timesteps: t [B] (one per sample, Wan2.1) or [B, seq_len] (one per token,
Wan2.2: the tokens of a clean image frame get 0).  Per token, the time
embedding e [B, L, dim], its projection e0 [B, L, 6, dim] and so every block
and head modulation belong to each token; with one t per sample they are
computed once ([B, 1, ...]) and broadcast, which is the same arithmetic.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["WanModel", "sinusoidal_embedding"]


def sinusoidal_embedding(dim, t):
    """t [N] -> [N, dim] as [cos..., sin...], computed in float64 then fp32."""
    half = dim // 2
    pos = t.to(torch.float64)
    ang = torch.outer(pos, torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=pos.device).div(half)))
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=1).float()


def _rope_table(n_pos, dim, theta=10000.0):
    # [n_pos, dim/2] complex128: exp(i * p * theta^(-2j/dim))
    f = torch.outer(torch.arange(n_pos, dtype=torch.float64),
                    1.0 / torch.pow(theta, torch.arange(0, dim, 2, dtype=torch.float64).div(dim)))
    return torch.polar(torch.ones_like(f), f)


class WanRMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class WanLayerNorm(nn.LayerNorm):
    def __init__(self, dim, eps=1e-6, elementwise_affine=False):
        super().__init__(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x):
        return super().forward(x.float()).type_as(x)


def attention(q, k, v):
    """q [B,Lq,N,D], k/v [B,Lk,N,D] -> [B,Lq,N*D]; softmax(q k^T / sqrt(D)) v in fp32."""
    b, lq, n, d = q.shape
    q = q.float().transpose(1, 2)
    k = k.float().transpose(1, 2)
    v = v.float().transpose(1, 2)
    a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d)), dim=-1)
    return torch.matmul(a, v).transpose(1, 2).reshape(b, lq, n * d)


def _rope_grid(grid, freqs):
    f, h, w = grid
    c = freqs.shape[1]
    fr = freqs.split([c - 2 * (c // 3), c // 3, c // 3], dim=1)
    return torch.cat([
        fr[0][:f].view(f, 1, 1, -1).expand(f, h, w, -1),
        fr[1][:h].view(1, h, 1, -1).expand(f, h, w, -1),
        fr[2][:w].view(1, 1, w, -1).expand(f, h, w, -1),
    ], dim=-1).reshape(1, f * h * w, 1, c)


def rope_apply(x, grid, freqs, fast=False):
    """x [B,L,N,D] with L = f*h*w tokens in (f,h,w) order; rotate pairs (2i,2i+1).
    Reference: complex128 like the official code; fast: the same rotation in
    x's dtype (training only, differs by rounding)."""
    b, L, n, d = x.shape
    c = d // 2
    tab = _rope_grid(grid, freqs)
    if fast:
        cos = tab.real.to(x.dtype).unsqueeze(-1)
        sin = tab.imag.to(x.dtype).unsqueeze(-1)
        xr = x.reshape(b, L, n, c, 2)
        rot = torch.stack([-xr[..., 1], xr[..., 0]], dim=-1)
        return (xr * cos + rot * sin).reshape(b, L, n, d)
    xc = torch.view_as_complex(x.to(torch.float64).reshape(b, L, n, c, 2))
    return torch.view_as_real(xc * tab).reshape(b, L, n, d).type_as(x)


class WanSelfAttention(nn.Module):
    def __init__(self, dim, num_heads, qk_norm=True, eps=1e-6):
        super().__init__()
        self.fast_rope = False
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x, grid, freqs):
        b, L, _ = x.shape
        n, d = self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(b, L, n, d)  # RMSNorm over all heads together
        k = self.norm_k(self.k(x)).view(b, L, n, d)
        v = self.v(x).view(b, L, n, d)
        fast = self.fast_rope
        y = attention(rope_apply(q, grid, freqs, fast), rope_apply(k, grid, freqs, fast), v)
        return self.o(y)


class WanT2VCrossAttention(WanSelfAttention):
    def forward(self, x, context):
        b, n, d = x.size(0), self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(b, -1, n, d)
        k = self.norm_k(self.k(context)).view(b, -1, n, d)
        v = self.v(context).view(b, -1, n, d)
        return self.o(attention(q, k, v))


class WanAttentionBlock(nn.Module):
    def __init__(self, dim, ffn_dim, num_heads, qk_norm=True, cross_attn_norm=True, eps=1e-6):
        super().__init__()
        self.norm1 = WanLayerNorm(dim, eps)
        self.self_attn = WanSelfAttention(dim, num_heads, qk_norm, eps)
        self.norm3 = WanLayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.cross_attn = WanT2VCrossAttention(dim, num_heads, qk_norm, eps)
        self.norm2 = WanLayerNorm(dim, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    def forward(self, x, e0, grid, freqs, context):
        # e0 [B,Lt,6,dim] (Lt = L per token, or 1 for all tokens):
        # shift1, scale1, gate1, shift2, scale2, gate2
        e = [u.squeeze(2) for u in (self.modulation.unsqueeze(0) + e0).chunk(6, dim=2)]
        y = self.self_attn(self.norm1(x).float() * (1 + e[1]) + e[0], grid, freqs)
        x = x + y * e[2]
        x = x + self.cross_attn(self.norm3(x), context)
        y = self.ffn(self.norm2(x).float() * (1 + e[4]) + e[3])
        return x + y * e[5]


class Head(nn.Module):
    def __init__(self, dim, out_dim, patch_size, eps=1e-6):
        super().__init__()
        self.norm = WanLayerNorm(dim, eps)
        self.head = nn.Linear(dim, out_dim * math.prod(patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim ** 0.5)

    def forward(self, x, e):
        # e [B,Lt,dim] (time_embedding output, not e0; Lt = L or 1): shift, scale
        m = [u.squeeze(2) for u in (self.modulation.unsqueeze(0) + e.unsqueeze(2)).chunk(2, dim=2)]
        return self.head(self.norm(x) * (1 + m[1]) + m[0])


class WanModel(nn.Module):
    def __init__(self, model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=2048,
                 ffn_dim=8192, freq_dim=256, text_dim=4096, out_dim=16, num_heads=16, num_layers=32,
                 window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6):
        super().__init__()
        assert model_type in ("t2v", "ti2v"), "only t2v and ti2v are implemented"
        self.model_type = model_type
        assert dim % num_heads == 0 and (dim // num_heads) % 2 == 0
        self.patch_size = tuple(patch_size)
        self.text_len, self.in_dim, self.dim, self.freq_dim = text_len, in_dim, dim, freq_dim
        self.text_dim, self.out_dim, self.num_heads, self.num_layers = text_dim, out_dim, num_heads, num_layers
        self.patch_embedding = nn.Conv3d(in_dim, dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList([
            WanAttentionBlock(dim, ffn_dim, num_heads, qk_norm, cross_attn_norm, eps) for _ in range(num_layers)])
        self.head = Head(dim, out_dim, self.patch_size, eps)
        d = dim // num_heads
        # not a parameter/buffer: rebuilt from head_dim like the official model
        self.freqs = torch.cat([_rope_table(1024, d - 4 * (d // 6)),
                                _rope_table(1024, 2 * (d // 6)),
                                _rope_table(1024, 2 * (d // 6))], dim=1)

    def pad_context(self, context):
        """list of [Li,text_dim] or tensor [B,L,text_dim] -> [B,text_len,text_dim] zero-padded."""
        if isinstance(context, torch.Tensor) and context.dim() == 3 and context.size(1) == self.text_len:
            return context
        if isinstance(context, torch.Tensor) and context.dim() == 2:
            context = [context]
        return torch.stack([torch.cat([u, u.new_zeros(self.text_len - u.size(0), u.size(1))]) for u in context])

    def forward(self, x, t, context, seq_len=None, inter=None):
        """x: [B,C,F,H,W] tensor or list of [C,F,H,W]; t: [B] (or [1], broadcast)
        or per token [B, S] with S >= L tokens (Wan2.2; entries past L are
        seq_len padding and do not matter);
        context: [B,text_len,text_dim] or list of [Li,text_dim].
        Returns the flow velocity with x's layout.  seq_len padding is invisible
        (self-attention keys are limited to real tokens), so it is ignored."""
        as_list = isinstance(x, (list, tuple))
        if as_list:
            x = torch.stack(list(x))
        B = x.size(0)
        pt, ph, pw = self.patch_size
        x = self.patch_embedding(x)                       # [B,dim,f,h,w]
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)                   # [B,L,dim], (f,h,w) raster
        L = x.size(1)
        per_token = t.dim() == 2
        if per_token:                                      # [B or 1, S >= L]
            assert t.size(1) >= L, "per-token t has %d values for %d tokens" % (t.size(1), L)
            t = t[:, :L].expand(B, L)
        else:
            t = t.reshape(-1)
            if t.numel() == 1 and B > 1:
                t = t.expand(B)
            t = t.unsqueeze(1)                               # [B,1]: all tokens alike
        Lt = t.size(1)
        ts = sinusoidal_embedding(self.freq_dim, t.reshape(-1)).view(B, Lt, -1)  # [B,Lt,freq]
        e = self.time_embedding(ts)                         # [B,Lt,dim]
        e0 = self.time_projection(e).unflatten(2, (6, self.dim))  # [B,Lt,6,dim]
        ctx = self.text_embedding(self.pad_context(context))  # [B,text_len,dim]
        if inter is not None:
            if per_token:
                inter.update({"t_sinusoid": ts, "e": e, "e0": e0})
            else:
                inter.update({"t_sinusoid": ts[:, 0], "e": e[:, 0], "e0": e0[:, 0]})
            inter.update({"patch_tokens": x, "context_emb": ctx})
        freqs = self.freqs
        for i, blk in enumerate(self.blocks):
            x = blk(x, e0, grid, freqs, ctx)
            if inter is not None:
                inter["block%d_out" % i] = x
        x = self.head(x, e)                                 # [B,L,pt*ph*pw*out]
        if inter is not None:
            inter["head_out"] = x
        f, h, w = grid
        x = x.view(B, f, h, w, pt, ph, pw, self.out_dim)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x).reshape(B, self.out_dim, f * pt, h * ph, w * pw)
        return list(x) if as_list else x
