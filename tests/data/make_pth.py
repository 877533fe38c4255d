#!/usr/bin/env python3
"""Makes the small PyTorch checkpoints under tests/data/ used by
tests/loader/test_pth.c and as fuzzing seeds. Run with Debian's python3
(it has torch):   /usr/bin/python3 tests/data/make_pth.py tests/data

Good files come from torch.save itself; broken and malicious ones are made
by rewriting the archive with the small zip writer below (which can also
force zip64 records, as torch does for files over 4 GiB)."""
import collections
import io
import os
import pickle
import struct
import sys
import zipfile
import zlib

import torch


def good_state():
    sd = collections.OrderedDict()
    sd["w32"] = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd["w16"] = (torch.arange(6, dtype=torch.float32) * 0.5).half().reshape(2, 3)
    sd["wbf"] = (torch.arange(4, dtype=torch.float32) - 2).bfloat16()
    sd["wT"] = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()       # strides (1, 3)
    sd["off"] = torch.arange(10, dtype=torch.float32)[4:]                    # storage offset 4
    base = torch.arange(8, dtype=torch.float32) * 10
    sd["shared_a"] = base[:4]                                                # same storage...
    sd["shared_b"] = base.view(2, 4)                                         # ...as this one
    sd["strided"] = torch.arange(20, dtype=torch.float32).reshape(4, 5)[:, 1:4:2]
    sd["i64"] = torch.arange(3, dtype=torch.int64)
    sd["param"] = torch.nn.Parameter(torch.full((2, 2), 7.0))
    sd["scalar"] = torch.tensor(3.5)
    sd["nested"] = {"inner": {"x": torch.tensor([1.0, 2.0])}, 0: torch.tensor([9.0])}
    sd["epoch"] = 5
    sd["name"] = "abc"
    return sd


def read_entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_zip(path, entries, zip64=False, align=64):
    """Stored entries, data aligned like torch.save aligns it."""
    out = io.BytesIO()
    central = []
    for name, data in entries:
        nb = name.encode()
        off = out.tell()
        extra = b""
        if zip64:
            extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        pad = (-(off + 30 + len(nb) + len(extra) + 4)) % align
        extra += struct.pack("<HH", 0xFADE, pad) + b"Z" * pad
        crc = zlib.crc32(data)
        size32 = 0xFFFFFFFF if zip64 else len(data)
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, 0, 0, 0, 0,
                              crc, size32, size32, len(nb), len(extra)))
        out.write(nb + extra + data)
        central.append((nb, crc, len(data), off))
    cd_off = out.tell()
    for nb, crc, size, off in central:
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, size, size, off)
            s32, o32 = 0xFFFFFFFF, 0xFFFFFFFF
        else:
            extra, s32, o32 = b"", size, off
        out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45 if zip64 else 20, 0, 0, 0, 0,
                              crc, s32, s32, len(nb), len(extra), 0, 0, 0, 0, o32))
        out.write(nb + extra)
    cd_size = out.tell() - cd_off
    n = len(central)
    if zip64:
        z64 = out.tell()
        out.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_off))
        out.write(struct.pack("<IIQI", 0x07064B50, 0, z64, 1))
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                              0xFFFFFFFF, 0))
    else:
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_off, 0))
    with open(path, "wb") as f:
        f.write(out.getvalue())


def replace(entries, suffix, data):
    return [(n, data if n.endswith(suffix) else d) for n, d in entries]


def _placeholder_global(module, name, obj):
    """Registers obj as module.name so that pickle writes GLOBAL module name
    for it (this torch lacks what newer ones pickle)."""
    setattr(sys.modules[module], name, obj)
    return obj


class _F8Dtype:
    """Stands for torch.float8_e4m3fn, which torch 1.13 does not have."""
    __module__ = "torch"

    def __reduce__(self):
        return "float8_e4m3fn"


def v3_pickle_module():
    """A pickle module for torch.save that writes tensors as torch >= 2.3
    writes those of its newer dtypes: _rebuild_tensor_v3(UntypedStorage,
    offset, size, stride, requires_grad, hooks, dtype). A tensor wrapped in
    AsF8 is written as float8_e4m3fn over its uint8 bytes."""
    def _rebuild_tensor_v3(*args):
        raise RuntimeError("placeholder")
    _rebuild_tensor_v3.__module__ = "torch._utils"
    _rebuild_tensor_v3.__qualname__ = "_rebuild_tensor_v3"
    fn = _placeholder_global("torch._utils", "_rebuild_tensor_v3", _rebuild_tensor_v3)
    f8 = _placeholder_global("torch", "float8_e4m3fn", _F8Dtype())

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, AsF8):
                t, dtype = obj.t, f8
            elif isinstance(obj, torch.Tensor):
                t, dtype = obj, obj.dtype
            else:
                return NotImplemented
            return fn, (t.storage().untyped(), t.storage_offset(), tuple(t.size()), t.stride(),
                        False, collections.OrderedDict(), dtype)

    mod = type(sys)("v3pickle")
    mod.Pickler = Pickler
    mod.Unpickler = pickle.Unpickler
    mod.load = pickle.load
    mod.dump = pickle.dump
    return mod


class AsF8:
    def __init__(self, t):
        self.t = t


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    p = lambda n: os.path.join(outdir, n)
    torch.save(good_state(), p("tensors.pth"))
    good = read_entries(p("tensors.pth"))
    write_zip(p("zip64.pth"), good, zip64=True)
    # Broadcast views (stride 0) are copied; one that would expand 4 bytes
    # into 2^64 must be refused, not allocated.
    torch.save({"e": torch.tensor([1.0, 2.0, 3.0]).expand(2, 3)}, p("expand.pth"))
    torch.save({"bomb": torch.ones(1).expand(2**31, 2**31)}, p("bomb.pth"))
    # A plain dict of one tensor, used as a small fuzzing seed.
    torch.save({"a": torch.ones(2, 3)}, p("small.pth"))

    # torch >= 2.3's layout for fp8 / uint16..64 tensors (rebuild v3 over an
    # untyped storage), also used here for an ordinary fp32 and a sliced fp16
    # view; e4m3fn bytes 0x38 0x40 0xb8 0x3c 0x00 0x01 are 1, 2, -1, 1.5, 0, 2^-9
    v3 = collections.OrderedDict()
    v3["w32"] = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    v3["h16"] = (torch.arange(8, dtype=torch.float32) * 0.25).half()[2:7]
    v3["f8"] = AsF8(torch.tensor([0x38, 0x40, 0xB8, 0x3C, 0x00, 0x01], dtype=torch.uint8).reshape(2, 3))
    torch.save(v3, p("v3.pth"), pickle_module=v3_pickle_module())
    v3e = read_entries(p("v3.pth"))
    # a v3 tensor whose untyped storage is too small for its dtype (w32: 48 bytes)
    write_zip(p("v3_short.pth"), replace(v3e, "data/0", b"\0" * 46))
    write_zip(p("bad_global.pth"), replace(good, "data.pkl", pickle.dumps({"x": Evil()}, protocol=2)))
    # protocol 2 header, then INST (old-style object construction)
    write_zip(p("bad_opcode.pth"), replace(good, "data.pkl", b"\x80\x02ios\nsystem\n."))
    write_zip(p("bad_storage.pth"), replace(good, "data/0", b"\0" * 8))   # w32 needs 48 bytes
    write_zip(p("no_pkl.pth"), [(n, d) for n, d in good if not n.endswith("data.pkl")])
    blob = open(p("tensors.pth"), "rb").read()
    open(p("truncated.pth"), "wb").write(blob[: len(blob) // 2])
    with zipfile.ZipFile(p("deflated.pth"), "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in good:
            z.writestr(n, d)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
