"""Minimal safetensors reader/writer (numpy / torch), no external package.

Layout: u64 little-endian header length, JSON header {name: {dtype, shape,
data_offsets}} (+ optional __metadata__), padded with spaces so the data
starts 8-byte aligned, then the raw little-endian tensor bytes.
"""
import json
import struct

import numpy as np

_NP = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}
_REV = {np.dtype(v).str: k for k, v in _NP.items()}


def load(path):
    """Return {name: numpy array} (BF16 is widened to float32)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        if info["dtype"] == "BF16":
            u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(_NP[info["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def load_torch(path):
    import torch
    return {k: torch.from_numpy(v) for k, v in load(path).items()}


def bf16_round(a):
    """float32 -> the float32 values of its BF16 rounding (nearest even)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def _typed(a, dt):
    """Bytes of a stored as dt where numpy has no such type: BF16 (rounded
    to nearest even) or F8_E4M3 (a holds the codes)."""
    if dt == "BF16":
        return (bf16_round(a).view(np.uint32) >> 16).astype("<u2").tobytes()
    if dt == "F8_E4M3":
        return np.ascontiguousarray(a, dtype=np.uint8).tobytes()
    raise ValueError(dt)


def save(path, tensors, metadata=None):
    """Write {name: numpy array or torch tensor, or (array, "BF16" or
    "F8_E4M3")} (sorted by name)."""
    hdr = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, tuple):
            a, dt = t
            b = _typed(a, dt)
            hdr[name] = {"dtype": dt, "shape": list(np.shape(a)),
                         "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
            continue
        if hasattr(t, "detach"):
            t = t.detach().cpu().contiguous().numpy()
        t = np.ascontiguousarray(t)
        key = t.dtype.newbyteorder("<").str if t.dtype.byteorder == ">" else np.dtype(t.dtype).str
        dt = _REV.get(np.dtype(t.dtype).newbyteorder("<").str) or _REV[key]
        b = t.astype(t.dtype.newbyteorder("<")).tobytes()
        hdr[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        hdr["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
