#!/usr/bin/python3
"""Writes a second umT5 conformance folder (tests/text/data/umt5_other/) with
other sizes, seeds and a different bucket count than the shared umt5_tiny,
from an independent float32 PyTorch implementation of the semantics in
tests/conformance/wan2.1/README.md (umt5_tiny section). Checked in CI by
`vdit conform` (suite conform); rerun to regenerate:

    /usr/bin/python3 tests/text/make_umt5_ref.py
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'data', 'umt5_other')

CFG = dict(vocab=200, dim=40, dim_attn=48, dim_ffn=72, num_heads=6, num_layers=3,
           num_buckets=16, shared_pos=False, dropout=0.1)
CASES = [dict(name='full', L=6, n_real=6), dict(name='padded', L=300, n_real=257)]
SEED_W, SEED_IO = 5151, 6262


def bucket(rel, num_buckets, max_dist=128):
    """rel = key - query (int64 tensor); float32 log then truncation."""
    nb = num_buckets // 2
    out = (rel > 0).long() * nb
    d = rel.abs()
    exact = nb // 2
    large = exact + (torch.log(d.float() / exact) / math.log(max_dist / exact) *
                     (nb - exact)).long()
    large = torch.min(large, torch.full_like(large, nb - 1))
    return out + torch.where(d < exact, d, large)


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(W, ids, mask, c, inter=None):
    H, L = c['num_heads'], ids.shape[0]
    hd = c['dim_attn'] // H
    x = W['token_embedding.weight'][ids]
    if inter is not None:
        inter['inter/token_emb'] = x[None]
    rel = torch.arange(L)[None, :] - torch.arange(L)[:, None]
    b = bucket(rel, c['num_buckets'])
    for l in range(c['num_layers']):
        p = 'blocks.%d.' % l
        pos = W[p + 'pos_embedding.embedding.weight'][b].permute(2, 0, 1)  # [H, L, L]
        if inter is not None and l == 0:
            inter['inter/pos_bias0'] = pos[None]
        h = rms(x, W[p + 'norm1.weight'])
        q = (h @ W[p + 'attn.q.weight'].T).view(L, H, hd).transpose(0, 1)
        k = (h @ W[p + 'attn.k.weight'].T).view(L, H, hd).transpose(0, 1)
        v = (h @ W[p + 'attn.v.weight'].T).view(L, H, hd).transpose(0, 1)
        bias = pos.masked_fill(mask[None, None, :] == 0, torch.finfo(torch.float32).min)
        a = torch.softmax(q @ k.transpose(1, 2) + bias, -1)
        y = (a @ v).transpose(0, 1).reshape(L, -1)
        x = x + y @ W[p + 'attn.o.weight'].T
        h = rms(x, W[p + 'norm2.weight'])
        f = (h @ W[p + 'ffn.fc1.weight'].T) * gelu_tanh(h @ W[p + 'ffn.gate.0.weight'].T)
        x = x + f @ W[p + 'ffn.fc2.weight'].T
        if inter is not None:
            inter['inter/block%d_out' % l] = x[None]
    return rms(x, W['norm.weight'])


def save(path, tensors):
    hdr, off, blobs = {}, 0, []
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        dt = {np.float32: 'F32', np.int64: 'I64'}[a.dtype.type]
        b = a.astype(a.dtype.newbyteorder('<')).tobytes()
        hdr[k] = dict(dtype=dt, shape=list(a.shape), data_offsets=[off, off + len(b)])
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b' ' * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def main():
    torch.set_num_threads(1)
    c = CFG
    D, A, F, H, NB = c['dim'], c['dim_attn'], c['dim_ffn'], c['num_heads'], c['num_buckets']
    shapes = {'token_embedding.weight': ([c['vocab'], D], 0.0, 1.0), 'norm.weight': ([D], 1.0, 0.1)}
    for l in range(c['num_layers']):
        p = 'blocks.%d.' % l
        shapes.update({
            p + 'norm1.weight': ([D], 1.0, 0.1), p + 'norm2.weight': ([D], 1.0, 0.1),
            p + 'attn.q.weight': ([A, D], 0.0, 0.7 / math.sqrt(D)),
            p + 'attn.k.weight': ([A, D], 0.0, 0.7 / math.sqrt(D)),
            p + 'attn.v.weight': ([A, D], 0.0, 1 / math.sqrt(D)),
            p + 'attn.o.weight': ([D, A], 0.0, 1 / math.sqrt(A)),
            p + 'ffn.gate.0.weight': ([F, D], 0.0, 1 / math.sqrt(D)),
            p + 'ffn.fc1.weight': ([F, D], 0.0, 1 / math.sqrt(D)),
            p + 'ffn.fc2.weight': ([D, F], 0.0, 1 / math.sqrt(F)),
            p + 'pos_embedding.embedding.weight': ([NB, H], 0.0, 0.5),
        })
    g = torch.Generator().manual_seed(SEED_W)
    W = {k: m + s * torch.randn(*sh, generator=g) for k, (sh, m, s) in sorted(shapes.items())}
    gi = torch.Generator().manual_seed(SEED_IO)
    io = {}
    with torch.no_grad():
        for i, cs in enumerate(CASES):
            L, n = cs['L'], cs['n_real']
            ids = torch.zeros(L, dtype=torch.long)
            ids[:n - 1] = torch.randint(2, c['vocab'], (n - 1,), generator=gi)
            ids[n - 1] = 1
            mask = (torch.arange(L) < n).long()
            inter = {} if i == 0 else None
            out = forward(W, ids, mask, c, inter)
            io[cs['name'] + '/ids'] = ids[None].numpy()
            io[cs['name'] + '/mask'] = mask[None].numpy()
            io[cs['name'] + '/out'] = out[None].numpy()
            for k, v in (inter or {}).items():
                io[cs['name'] + '/' + k] = v.numpy()
            # float64 rerun: the intrinsic fp32 noise of this folder
            W64 = {k: v.double() for k, v in W.items()}
            o64 = forward(W64, ids, mask, c)
            print('%s: fp64 vs fp32 max_abs %.2e' % (cs['name'], (o64 - out.double()).abs().max()))
        Lb = max(cs['L'] for cs in CASES)
        io['rel_pos_bucket'] = bucket(torch.arange(2 * Lb - 1) - (Lb - 1), NB).numpy()
    os.makedirs(OUT, exist_ok=True)
    save(os.path.join(OUT, 'weights.safetensors'), {k: v.numpy() for k, v in W.items()})
    save(os.path.join(OUT, 'io.safetensors'), io)
    cfg = dict(vector='umt5_other',
               reference='wan.modules.t5.T5Encoder (independent re-implementation: '
                         'tests/text/make_umt5_ref.py)',
               constructor=c, call=dict(cases=CASES), weights=dict(seed=SEED_W, dtype='F32'),
               inputs_seed=SEED_IO,
               io={k: dict(shape=list(v.shape), dtype=str(v.dtype)) for k, v in sorted(io.items())})
    with open(os.path.join(OUT, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=1)
    write_layouts(W, c)
    return 0


def hf_name(k):
    """Original Wan name -> HF UMT5EncoderModel name."""
    if k == 'token_embedding.weight':
        return 'shared.weight'
    if k == 'norm.weight':
        return 'encoder.final_layer_norm.weight'
    parts = k.split('.')
    l, rest = parts[1], '.'.join(parts[2:])
    m = {'norm1.weight': 'layer.0.layer_norm.weight', 'norm2.weight': 'layer.1.layer_norm.weight',
         'pos_embedding.embedding.weight': 'layer.0.SelfAttention.relative_attention_bias.weight',
         'ffn.gate.0.weight': 'layer.1.DenseReluDense.wi_0.weight',
         'ffn.fc1.weight': 'layer.1.DenseReluDense.wi_1.weight',
         'ffn.fc2.weight': 'layer.1.DenseReluDense.wo.weight'}
    if rest in m:
        return 'encoder.block.%s.%s' % (l, m[rest])
    return 'encoder.block.%s.layer.0.SelfAttention.%s' % (l, rest[len('attn.'):])


def write_layouts(W, c):
    """The same weights in the three layouts users have (layouts/):
    enc-bf16.pth (original names, bf16, torch.save zip, as
    models_t5_umt5-xxl-enc-bf16.pth), umt5_fp16.safetensors (HF names, F16,
    as the repackaged umt5_xxl_fp16.safetensors), text_encoder/ (diffusers:
    HF names, F32, two shards + index)."""
    d = os.path.join(OUT, 'layouts')
    os.makedirs(os.path.join(d, 'text_encoder'), exist_ok=True)
    torch.save({k: v.to(torch.bfloat16) for k, v in W.items()}, os.path.join(d, 'enc-bf16.pth'))
    hf = {hf_name(k): v for k, v in W.items()}
    hf['encoder.embed_tokens.weight'] = hf['shared.weight']
    save_any(os.path.join(d, 'umt5_fp16.safetensors'), {k: v.half() for k, v in hf.items()})
    names = sorted(hf)
    shards = [names[:len(names) // 2], names[len(names) // 2:]]
    wmap = {}
    for i, sh in enumerate(shards):
        fn = 'model-%05d-of-%05d.safetensors' % (i + 1, len(shards))
        save_any(os.path.join(d, 'text_encoder', fn), {k: hf[k] for k in sh})
        wmap.update({k: fn for k in sh})
    with open(os.path.join(d, 'text_encoder', 'model.safetensors.index.json'), 'w') as f:
        json.dump({'metadata': {}, 'weight_map': wmap}, f, indent=1)
    with open(os.path.join(d, 'text_encoder', 'config.json'), 'w') as f:
        json.dump({'architectures': ['UMT5EncoderModel'], 'd_model': c['dim'],
                   'd_kv': c['dim_attn'] // c['num_heads'], 'd_ff': c['dim_ffn'],
                   'num_heads': c['num_heads'], 'num_layers': c['num_layers'],
                   'relative_attention_num_buckets': c['num_buckets'],
                   'vocab_size': c['vocab'], 'feed_forward_proj': 'gated-gelu'}, f, indent=1)


def save_any(path, tensors):
    """safetensors with F32/F16 tensors."""
    hdr, off, blobs = {}, 0, []
    for k in sorted(tensors):
        a = tensors[k].contiguous().numpy()
        dt = {np.float32: 'F32', np.float16: 'F16'}[a.dtype.type]
        b = a.tobytes()
        hdr[k] = dict(dtype=dt, shape=list(a.shape), data_offsets=[off, off + len(b)])
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b' ' * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


if __name__ == '__main__':
    sys.exit(main())
