"""umT5 encoder (T5Encoder as built by umt5_xxl(encoder_only=True)) in PyTorch.

Written from the semantics in tests/conformance/wan2.1/README.md; parameter
names match models_t5_umt5-xxl-enc-bf16.pth / .safetensors.
"""
import math

import torch
import torch.nn as nn

__all__ = ["T5Encoder"]


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GELU(nn.Module):
    def forward(self, x):
        return gelu_tanh(x)


class T5LayerNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * x.type_as(self.weight)


class T5Attention(nn.Module):
    def __init__(self, dim, dim_attn, num_heads, dropout=0.1):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim_attn // num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None, pos_bias=None):
        b, n, c = x.size(0), self.num_heads, self.head_dim
        q = self.q(x).view(b, -1, n, c)
        k = self.k(x).view(b, -1, n, c)
        v = self.v(x).view(b, -1, n, c)
        bias = x.new_zeros(b, n, q.size(1), k.size(1))
        if pos_bias is not None:
            bias = bias + pos_bias
        if mask is not None:
            # only padded keys are removed; padded query rows are still computed
            m = mask.view(b, 1, 1, -1) if mask.dim() == 2 else mask.unsqueeze(1)
            bias = bias.masked_fill(m == 0, torch.finfo(x.dtype).min)
        a = torch.einsum("binc,bjnc->bnij", q, k) + bias   # no 1/sqrt(d) in T5
        a = torch.softmax(a.float(), dim=-1).type_as(a)
        y = torch.einsum("bnij,bjnc->binc", a, v).reshape(b, -1, n * c)
        return self.dropout(self.o(y))


class T5FeedForward(nn.Module):
    def __init__(self, dim, dim_ffn, dropout=0.1):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), GELU())
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.dropout(self.fc1(x) * self.gate(x))
        return self.dropout(self.fc2(x))


class T5RelativeEmbedding(nn.Module):
    def __init__(self, num_buckets, num_heads, bidirectional=True, max_dist=128):
        super().__init__()
        self.num_buckets, self.num_heads = num_buckets, num_heads
        self.bidirectional, self.max_dist = bidirectional, max_dist
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def bucket(self, rel):
        """rel = key - query (int64) -> bucket index."""
        if self.bidirectional:
            nb = self.num_buckets // 2
            out = (rel > 0).long() * nb
            rel = rel.abs()
        else:
            nb = self.num_buckets
            out = torch.zeros_like(rel)
            rel = -torch.min(rel, torch.zeros_like(rel))
        exact = nb // 2
        large = exact + (torch.log(rel.float() / exact) / math.log(self.max_dist / exact) * (nb - exact)).long()
        large = torch.min(large, torch.full_like(large, nb - 1))
        return out + torch.where(rel < exact, rel, large)

    def forward(self, lq, lk):
        dev = self.embedding.weight.device
        rel = torch.arange(lk, device=dev).unsqueeze(0) - torch.arange(lq, device=dev).unsqueeze(1)
        return self.embedding(self.bucket(rel)).permute(2, 0, 1).unsqueeze(0).contiguous()  # [1,n,lq,lk]


class T5SelfAttention(nn.Module):
    def __init__(self, dim, dim_attn, dim_ffn, num_heads, num_buckets, shared_pos=True, dropout=0.1):
        super().__init__()
        self.shared_pos = shared_pos
        self.norm1 = T5LayerNorm(dim)
        self.attn = T5Attention(dim, dim_attn, num_heads, dropout)
        self.norm2 = T5LayerNorm(dim)
        self.ffn = T5FeedForward(dim, dim_ffn, dropout)
        self.pos_embedding = None if shared_pos else T5RelativeEmbedding(num_buckets, num_heads, True)

    def forward(self, x, mask=None, pos_bias=None):
        e = pos_bias if self.shared_pos else self.pos_embedding(x.size(1), x.size(1))
        x = x + self.attn(self.norm1(x), mask=mask, pos_bias=e)
        return x + self.ffn(self.norm2(x))


class T5Encoder(nn.Module):
    def __init__(self, vocab=256384, dim=4096, dim_attn=4096, dim_ffn=10240, num_heads=64, num_layers=24,
                 num_buckets=32, shared_pos=False, dropout=0.1):
        super().__init__()
        self.dim, self.shared_pos = dim, shared_pos
        self.token_embedding = nn.Embedding(vocab, dim)
        self.pos_embedding = T5RelativeEmbedding(num_buckets, num_heads, True) if shared_pos else None
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([
            T5SelfAttention(dim, dim_attn, dim_ffn, num_heads, num_buckets, shared_pos, dropout)
            for _ in range(num_layers)])
        self.norm = T5LayerNorm(dim)

    def forward(self, ids, mask=None):
        """ids, mask [B,L] int64 -> hidden states [B,L,dim] (all rows; keep the first n_real)."""
        x = self.dropout(self.token_embedding(ids))
        e = self.pos_embedding(x.size(1), x.size(1)) if self.shared_pos else None
        for blk in self.blocks:
            x = blk(x, mask, pos_bias=e)
        return self.dropout(self.norm(x))
