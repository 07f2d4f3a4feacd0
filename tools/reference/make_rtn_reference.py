"""qvl's own q8 / q4 quantizers on a few matrices of the tiny model (test/fixtures/tiny) and on an
odd-width input, computed independently from the definitions in docs/quantization.md, for
test/quant-convert.test.ts.

Writes test/fixtures/quant/rtn/reference.safetensors: for each pick `<p>.q8.qs/.scales`,
`<p>.q4a32.*`, `<p>.q4a128.*` (asymmetric, .qs .scales .zeros) and `<p>.q4s32.*` (symmetric), and
`odd.input` with the same for it.

Only numpy: the safetensors files are read and written here (an 8-byte header length, a JSON
header, the raw little-endian data).

usage: python3 tools/reference/make_rtn_reference.py
"""
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
TINY = os.path.join(ROOT, 'test', 'fixtures', 'tiny', 'model.safetensors')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'quant', 'rtn', 'reference.safetensors')

DTYPES = {'F32': np.float32, 'I8': np.int8, 'U8': np.uint8}


def read_safetensors(path, names):
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name in names:
            info = header[name]
            a, b = info['data_offsets']
            f.seek(base + a)
            raw = f.read(b - a)
            if info['dtype'] == 'BF16':
                v = (np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16).view(np.float32)
            elif info['dtype'] == 'F32':
                v = np.frombuffer(raw, dtype='<f4').copy()
            else:
                raise ValueError(f'{name}: dtype {info["dtype"]}')
            out[name] = v.reshape(info['shape'])
        return out


def write_safetensors(tensors, path):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        v = np.ascontiguousarray(tensors[name])
        dtype = next(k for k, t in DTYPES.items() if v.dtype == t)
        raw = v.astype(v.dtype.newbyteorder('<')).tobytes()
        header[name] = {'dtype': dtype, 'shape': list(v.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def round_away(v):
    """Ties away from zero. qvl evaluates v < 0 ? -trunc(0.5 - v) : trunc(v + 0.5) in double,
    which is this same value for every double."""
    return np.where(v < 0, -np.trunc(0.5 - v), np.trunc(v + 0.5))


def rtn_q8(w):
    rows, cols = w.shape
    nb = -(-cols // 32)
    qs = np.zeros((rows, cols), dtype=np.int8)
    sc = np.zeros((rows, nb), dtype=np.float32)
    for b in range(nb):
        x = w[:, b * 32:(b + 1) * 32].astype(np.float64)
        d = (np.abs(x).max(1) / 127).astype(np.float32)
        sc[:, b] = d
        dd = d.astype(np.float64)[:, None]
        with np.errstate(divide='ignore', invalid='ignore'):
            q = np.where(dd == 0, 0, round_away(x * (1 / dd)))
        qs[:, b * 32:(b + 1) * 32] = np.clip(q, -127, 127)
    return qs, sc


def half_exact_scale(d):
    """qvl's q4 scales: within binary16's normal range, the float32 magnitude rounded up to the
    next binary16 value (low 13 mantissa bits cleared, one unit added if any was set)."""
    u = np.asarray(d, dtype=np.float32).copy().view(np.uint32)
    a = u & np.uint32(0x7fffffff)
    inside = (a >= 0x38800000) & (a <= 0x477fe000) & ((a & 0x1fff) != 0)
    up = (u & np.uint32(0x80000000)) | ((a & ~np.uint32(0x1fff)) + np.uint32(0x2000))
    return np.where(inside, up, u).astype(np.uint32).view(np.float32)


# asymmetric q4: the group's [min, max], then with the max or the min pulled in by a tenth
CLIPS = [(1.0, 1.0), (1.0, 0.9), (0.9, 1.0)]


def range_scale(lo, hi):
    """Scale (binary16-rounded up) and zero point of ranges [lo, hi] given as float32 arrays."""
    d = half_exact_scale(((hi.astype(np.float64) - lo.astype(np.float64)) / 15).astype(np.float32))
    with np.errstate(divide='ignore', invalid='ignore'):
        z = np.where(d == 0, 0, np.clip(round_away(-lo.astype(np.float64) * (1 / d.astype(np.float64))), 0, 15))
    return d, z


def range_error(x, d, z):
    """Σ (x − (q − z)·d)² per row in float32 (docs/quantization.md): q = clamp(trunc(x·(1/d) ±
    0.5) + z, 0, 15) with 1/d rounded to float32, squares summed in order into eight lanes by
    column mod 8, then ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7))."""
    f32 = np.float32
    with np.errstate(divide='ignore', over='ignore', invalid='ignore'):
        idf = (1 / d.astype(np.float64)).astype(f32)[:, None]
        t = (x * idf) + np.copysign(f32(0.5), x)
        q = np.clip(np.trunc(t) + z[:, None], 0, 15)
        e = x - (q - z[:, None]).astype(f32) * d[:, None]
        e2 = e * e
        lanes = np.zeros((x.shape[0], 8), dtype=f32)
        for c in range(x.shape[1]):
            lanes[:, c % 8] = lanes[:, c % 8] + e2[:, c]
        l = lanes
        return ((l[:, 0] + l[:, 4]) + (l[:, 1] + l[:, 5])) + ((l[:, 2] + l[:, 6]) + (l[:, 3] + l[:, 7]))


def clipped_range(x, mn, mx):
    """Each row's candidate (CLIPS) of least float32 error, the first on a tie; the plain range
    where float32 cannot score it (zero scale, a reciprocal or an error past float32's range),
    and a clipped candidate skipped where it cannot be scored."""
    cands = []
    for a, b in CLIPS:
        d, z = range_scale((mn * a).astype(np.float32), (mx * b).astype(np.float32))
        with np.errstate(divide='ignore', over='ignore'):
            ok = (d != 0) & np.isfinite((1 / d.astype(np.float64)).astype(np.float32))
        cands.append((d, z, ok, range_error(x, np.where(ok, d, 1).astype(np.float32), np.where(ok, z, 0))))
    d, z, ok0, e0 = cands[0]
    d, z, best = d.copy(), z.copy(), e0.copy()
    search = ok0 & np.isfinite(e0)
    for dk, zk, ok, ek in cands[1:]:
        take = search & ok & (ek < best)
        d, z, best = np.where(take, dk, d), np.where(take, zk, z), np.where(take, ek, best)
    return d, z


def rtn_q4(w, g, sym):
    rows, cols = w.shape
    ng = -(-cols // g)
    q = np.zeros((rows, cols), dtype=np.int64)
    sc = np.zeros((rows, ng), dtype=np.float32)
    zs = np.zeros((rows, ng), dtype=np.uint8)
    for j in range(ng):
        x32 = w[:, j * g:(j + 1) * g].astype(np.float32)
        x = x32.astype(np.float64)
        if sym:
            big = x[np.arange(rows), np.abs(x).argmax(1)]
            d = half_exact_scale(np.where(big == 0, 0.0, big / -8).astype(np.float32)).astype(np.float64)
            z = np.full(rows, 8.0)
        else:
            mn = np.minimum(x.min(1), 0)
            mx = np.maximum(x.max(1), 0)
            d32, z = clipped_range(x32, mn, mx)
            d = d32.astype(np.float64)
        sc[:, j] = d
        zs[:, j] = z
        with np.errstate(divide='ignore', invalid='ignore'):
            v = np.where(d[:, None] == 0, z[:, None], round_away(x * (1 / d[:, None])) + z[:, None])
        q[:, j * g:(j + 1) * g] = np.clip(v, 0, 15)
    if cols % 2:
        q = np.concatenate([q, np.zeros((rows, 1), dtype=np.int64)], 1)
    qs = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
    return qs, sc, zs


def main():
    picks = ['model.language_model.layers.0.self_attn.q_proj', 'model.language_model.layers.1.mlp.down_proj',
             'model.visual.blocks.0.attn.qkv', 'model.visual.blocks.1.mlp.linear_fc2', 'model.visual.merger.linear_fc1']
    weights = read_safetensors(TINY, [p + '.weight' for p in picks])
    # odd widths and ties exercise partial blocks and rounding direction
    odd = (np.random.default_rng(20240611).standard_normal((5, 45)) * 0.1).astype(np.float32)
    odd[0, :4] = [0.5, -0.5, 0.25, -0.25]
    odd[1, :] = 0
    odd[2, 7] = 1.5  # one outlier: a clipped range wins that group
    inputs = {p: weights[p + '.weight'] for p in picks}
    inputs['odd'] = odd
    rtn = {'odd.input': odd}
    for p, w in inputs.items():
        rtn[f'{p}.q8.qs'], rtn[f'{p}.q8.scales'] = rtn_q8(w)
        for g in (32, 128):
            rtn[f'{p}.q4a{g}.qs'], rtn[f'{p}.q4a{g}.scales'], rtn[f'{p}.q4a{g}.zeros'] = rtn_q4(w, g, sym=False)
        rtn[f'{p}.q4s32.qs'], rtn[f'{p}.q4s32.scales'], _ = rtn_q4(w, 32, sym=True)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    write_safetensors(rtn, OUT)
    os.chmod(OUT, 0o644)
    print('rtn', len(rtn), 'tensors')


if __name__ == '__main__':
    sys.exit(main())
