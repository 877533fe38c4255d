"""Wan2.2 video VAE (wan.modules.vae2_2.WanVAE_, used by TI2V-5B) in PyTorch.

Written from the semantics in tests/conformance/wan2.2/README.md ("vae22_tiny");
parameter names match Wan2.2_VAE.pth / wan2.2_vae.safetensors. What differs
from the Wan2.1 VAE (models/wan/vae.py, whose layers are reused):

* frames are patchified 2x2 before the encoder (12 channels) and the decoder's
  12 output channels unpatchified; channel c*4 + r*2 + q holds pixel
  (2h + q, 2w + r) (the width offset is the slower one);
* every level is a residual block: its layers (ResidualBlocks, then the
  resample) plus a parameter-free shortcut of the block input,
  AvgDown3D in the encoder (space/time-to-channel, then the mean of groups of
  consecutive channels; in time a zero frame in front of frame 0, then pairs)
  and DupUp3D in the decoder (channel repeat, depth-to-space; the first latent
  frame drops its first factor_t - 1 frames); the decoder's last level has no
  shortcut;
* the upsamplers' 3x3 conv keeps the channel count (Wan2.1 halved it);
* the decoder has its own width (dec_dim 256 vs dim 160 in the real model);
* z_dim 48 with its own 48-value latent mean / std.

Two equivalent evaluation paths, as in vae.py: the official chunked one
(encode frame 0 then 4-frame chunks, decode one latent frame at a time, with a
per-conv feature cache; AvgDown3D is chunk-local there) and a full-sequence one
(every causal conv over the whole clip at once).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .vae import CausalConv3d, RMS_norm, Resample, ResidualBlock, AttentionBlock, _Cache, _cconv, _run

__all__ = ["WanVAE22_", "WAN22_LATENT_MEAN", "WAN22_LATENT_STD", "latent_scale22", "patchify",
           "unpatchify"]

# the published 48-value latent statistics the Wan2_2_VAE wrapper normalises with
WAN22_LATENT_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667]
WAN22_LATENT_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744]


def latent_scale22(device=None, z_dim=48):
    """[mean, 1/std] as the Wan2_2_VAE wrapper passes them (1/std in float32)."""
    mean = torch.tensor(WAN22_LATENT_MEAN[:z_dim], dtype=torch.float32, device=device)
    std = torch.tensor(WAN22_LATENT_STD[:z_dim], dtype=torch.float32, device=device)
    return [mean, 1.0 / std]


def patchify(x, p=2):
    """[B,C,T,H,W] -> [B,C*p*p,T,H/p,W/p]; channel (c*p + r)*p + q = pixel (p*h + q, p*w + r)."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // p, p, w // p, p)         # b c t h q w r
    x = x.permute(0, 1, 6, 4, 2, 3, 5)                    # b c r q t h w
    return x.reshape(b, c * p * p, t, h // p, w // p)


def unpatchify(x, p=2):
    """The inverse of patchify."""
    b, cpp, t, h, w = x.shape
    x = x.reshape(b, cpp // (p * p), p, p, t, h, w)      # b c r q t h w
    x = x.permute(0, 1, 4, 5, 3, 6, 2)                    # b c t h q w r
    return x.reshape(b, cpp // (p * p), t, h * p, w * p)


def avg_down(x, out_ch, ft, fs):
    """AvgDown3D: zero frames in front up to a multiple of ft, then channels
    ordered (c, t-offset, h-offset, w-offset), then the mean of each group of
    in*ft*fs*fs/out consecutive channels."""
    pad = (ft - x.shape[2] % ft) % ft
    x = F.pad(x, (0, 0, 0, 0, pad, 0))
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t // ft, ft, h // fs, fs, w // fs, fs)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * ft * fs * fs, t // ft, h // fs, w // fs)
    g = c * ft * fs * fs // out_ch
    assert g * out_ch == c * ft * fs * fs
    return x.reshape(b, out_ch, g, t // ft, h // fs, w // fs).mean(2)


def dup_up(x, out_ch, ft, fs, first):
    """DupUp3D: each channel repeated out*ft*fs*fs/in times, the repeats
    ordered (c, t-offset, h-offset, w-offset) and moved to time/space; the
    first chunk drops its first ft - 1 frames."""
    b, c, t, h, w = x.shape
    rep = out_ch * ft * fs * fs // c
    assert rep * c == out_ch * ft * fs * fs
    x = x.repeat_interleave(rep, dim=1).reshape(b, out_ch, ft, fs, fs, t, h, w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, out_ch, t * ft, h * fs, w * fs)
    return x[:, :, ft - 1:] if first else x


class Resample22(Resample):
    """The Wan2.1 resample rules, but the upsamplers' 3x3 conv keeps C channels."""

    def __init__(self, dim, mode):
        super().__init__(dim, mode)
        if mode.startswith("upsample"):
            self.resample[1] = nn.Conv2d(dim, dim, 3, padding=1)


def _blocks(in_dim, out_dim, n_res, dropout, resample):
    """n_res ResidualBlocks from in_dim to out_dim, then the Resample mode (or none)."""
    layers = []
    for _ in range(n_res):
        layers.append(ResidualBlock(in_dim, out_dim, dropout))
        in_dim = out_dim
    if resample:
        layers.append(Resample22(out_dim, resample))
    return nn.Sequential(*layers)


class DownBlock(nn.Module):
    """Down_ResidualBlock: layers .downsamples.N plus the AvgDown3D shortcut."""

    def __init__(self, in_dim, out_dim, n_res, t_down, down, dropout=0.0):
        super().__init__()
        self.out_dim, self.ft, self.fs = out_dim, 2 if t_down else 1, 2 if down else 1
        self.downsamples = _blocks(in_dim, out_dim, n_res, dropout,
                                   down and ("downsample3d" if t_down else "downsample2d"))

    def forward(self, x, cache=None, full=False):
        # chunked: the zero padding in front is per chunk (only the 1-frame first
        # chunk needs it); full: one zero frame in front of frame 0
        sc = avg_down(x, self.out_dim, self.ft, self.fs)
        return _run(self.downsamples, x, cache, full) + sc


class UpBlock(nn.Module):
    """Up_ResidualBlock: layers .upsamples.N plus the DupUp3D shortcut (only with a resample)."""

    def __init__(self, in_dim, out_dim, n_res, t_up, up, dropout=0.0):
        super().__init__()
        self.out_dim, self.up = out_dim, up
        self.ft, self.fs = 2 if t_up else 1, 2
        self.upsamples = _blocks(in_dim, out_dim, n_res, dropout,
                                 up and ("upsample3d" if t_up else "upsample2d"))

    def forward(self, x, cache=None, full=False, first=False):
        y = _run(self.upsamples, x, cache, full)
        if not self.up:
            return y
        # full sequence: frame 0 is the first chunk
        return y + dup_up(x, self.out_dim, self.ft, self.fs, first or full)


class Encoder22(nn.Module):
    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temperal_downsample, dropout=0.0):
        super().__init__()
        dims = [dim * u for u in [1] + list(dim_mult)]
        self.conv1 = CausalConv3d(12, dims[0], 3, padding=1)
        n = len(dim_mult)
        self.downsamples = nn.Sequential(*[
            DownBlock(dims[i], dims[i + 1], num_res_blocks,
                      temperal_downsample[i] if i < len(temperal_downsample) else False, i != n - 1, dropout)
            for i in range(n)])
        out = dims[-1]
        self.middle = nn.Sequential(ResidualBlock(out, out, dropout), AttentionBlock(out),
                                    ResidualBlock(out, out, dropout))
        self.head = nn.Sequential(RMS_norm(out, images=False), nn.SiLU(), CausalConv3d(out, z_dim, 3, padding=1))

    def forward(self, x, cache=None, full=False):
        x = _cconv(self.conv1, x, cache)
        for blk in self.downsamples:
            x = blk(x, cache, full)
        x = _run(self.middle, x, cache, full)
        return _run(self.head, x, cache, full)


class Decoder22(nn.Module):
    def __init__(self, dec_dim, z_dim, dim_mult, num_res_blocks, temperal_upsample, dropout=0.0):
        super().__init__()
        dim_mult = list(dim_mult)
        dims = [dec_dim * u for u in [dim_mult[-1]] + dim_mult[::-1]]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0], dropout), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0], dropout))
        n = len(dim_mult)
        self.upsamples = nn.Sequential(*[
            UpBlock(dims[i], dims[i + 1], num_res_blocks + 1,
                    temperal_upsample[i] if i < len(temperal_upsample) else False, i != n - 1, dropout)
            for i in range(n)])
        out = dims[-1]
        self.head = nn.Sequential(RMS_norm(out, images=False), nn.SiLU(), CausalConv3d(out, 12, 3, padding=1))

    def forward(self, x, cache=None, full=False, first=False):
        x = _cconv(self.conv1, x, cache)
        x = _run(self.middle, x, cache, full)
        for blk in self.upsamples:
            x = blk(x, cache, full, first)
        return _run(self.head, x, cache, full)


class WanVAE22_(nn.Module):
    def __init__(self, dim=160, dec_dim=256, z_dim=48, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
                 temperal_downsample=(False, True, True), dropout=0.0):
        super().__init__()
        self.z_dim = z_dim
        self.temperal_downsample = list(temperal_downsample)
        self.temperal_upsample = self.temperal_downsample[::-1]
        self.encoder = Encoder22(dim, z_dim * 2, dim_mult, num_res_blocks, self.temperal_downsample, dropout)
        self.conv1 = CausalConv3d(z_dim * 2, z_dim * 2, 1)
        self.conv2 = CausalConv3d(z_dim, z_dim, 1)
        self.decoder = Decoder22(dec_dim, z_dim, dim_mult, num_res_blocks, self.temperal_upsample, dropout)

    def encoder_out(self, x, chunked=True):
        """video [B,3,T,H,W] (T = 1+4k) -> encoder output before conv1 [B,2z,1+k',H/16,W/16]."""
        x = patchify(x)
        if not chunked:
            return self.encoder(x, None, full=True)
        cache, outs, t = _Cache(), [], x.shape[2]
        for i in range(1 + (t - 1) // 4):
            cache.idx = 0
            xi = x[:, :, :1] if i == 0 else x[:, :, 1 + 4 * (i - 1):1 + 4 * i]
            outs.append(self.encoder(xi, cache))
        return torch.cat(outs, 2)

    def encode_raw(self, x, chunked=True):
        mu, log_var = self.conv1(self.encoder_out(x, chunked)).chunk(2, dim=1)
        return mu, log_var

    def normalize(self, mu, scale):
        return (mu - scale[0].view(1, -1, 1, 1, 1)) * scale[1].view(1, -1, 1, 1, 1)

    def encode(self, x, scale, chunked=True):
        return self.normalize(self.encode_raw(x, chunked)[0], scale)

    def decoder_out(self, z, chunked=True):
        """un-normalised latent [B,z,F,h,w] -> decoder output before unpatchify [B,12,1+4(F-1),8h,8w]."""
        x = self.conv2(z)
        if not chunked:
            return self.decoder(x, None, full=True)
        cache, outs = _Cache(), []
        for i in range(z.shape[2]):
            cache.idx = 0
            outs.append(self.decoder(x[:, :, i:i + 1], cache, first=i == 0))
        return torch.cat(outs, 2)

    def decode_raw(self, z, chunked=True):
        """un-normalised latent -> video [B,3,1+4(F-1),16h,16w] (not clamped)."""
        return unpatchify(self.decoder_out(z, chunked))

    def decode(self, z, scale, chunked=True):
        z = z / scale[1].view(1, -1, 1, 1, 1) + scale[0].view(1, -1, 1, 1, 1)
        return self.decode_raw(z, chunked)
