"""Writes the small media test inputs under test/fixtures/media/ and what Pillow decodes them to.

The decoded reference is what Hugging Face's `load_image` hands to the processor: open with
Pillow, `ImageOps.exif_transpose`, then `convert("RGB")` (alpha dropped, not composited).
Each input gets `<name>.pil.rgb` (raw RGB, row-major) and an entry in `pil_reference.json`.
Run with any Python that has Pillow and NumPy:  python tools/reference/make_media_fixtures.py
"""
import io
import json
import os
import sys

import numpy as np
from PIL import Image, ImageOps, features
import PIL

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "media")


def base_rgb(w, h, seed):
    """A busy but smooth test pattern: gradients, a disc and a bar, plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1)).astype(np.int32)
    g = (y * 255 // max(h - 1, 1)).astype(np.int32)
    b = ((x + y) * 4 % 256).astype(np.int32)
    disc = (x - w * 0.3) ** 2 + (y - h * 0.4) ** 2 < (min(w, h) * 0.2) ** 2
    r[disc], g[disc], b[disc] = 250, 30, 40
    bar = (x > w * 0.6) & (x < w * 0.75)
    r[bar], g[bar], b[bar] = 20, 20, 230
    img = np.stack([r, g, b], -1) + rng.integers(-6, 7, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def exif_with_orientation(o):
    exif = Image.Exif()
    exif[0x0112] = o
    return exif.tobytes()


def hf_load(path):
    img = Image.open(path)
    img = ImageOps.exif_transpose(img)
    return img.convert("RGB")


def main():
    os.makedirs(OUT, exist_ok=True)
    made = {}

    def save(name, fn):
        path = os.path.join(OUT, name)
        fn(path)
        made[name] = path

    rgb = base_rgb(40, 24, 1)
    im = Image.fromarray(rgb)
    # JPEG stored landscape with EXIF orientation 6: shown rotated 90 degrees clockwise (24x40).
    save("exif_orient6.jpg", lambda p: im.save(p, quality=90, exif=exif_with_orientation(6)))
    # Orientation 2 is a mirror only; 5 is transpose (mirror + rotation).
    save("exif_orient2.jpg", lambda p: im.save(p, quality=90, exif=exif_with_orientation(2)))
    save("exif_orient5.jpg", lambda p: im.save(p, quality=90, exif=exif_with_orientation(5)))
    # An embedded ICC profile that colour management would act on strongly; Pillow ignores it.
    from PIL import ImageCms
    xyz = ImageCms.ImageCmsProfile(ImageCms.createProfile("XYZ")).tobytes()
    save("icc_xyz.jpg", lambda p: im.save(p, quality=90, icc_profile=xyz))
    save("gray.jpg", lambda p: im.convert("L").save(p, quality=85))
    save("cmyk.jpg", lambda p: im.convert("CMYK").save(p, quality=90))

    # RGBA with fully transparent pixels that still carry colour: dropping alpha must keep it.
    a = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (24, 1))
    a[:, :8] = 0
    rgba = Image.fromarray(np.dstack([rgb, a]), "RGBA")
    save("rgba.png", lambda p: rgba.save(p))
    save("la.png", lambda p: Image.fromarray(np.dstack([rgb[..., 1], a]), "LA").save(p))
    pal = im.quantize(colors=16, method=Image.Quantize.MEDIANCUT)
    pal.info["transparency"] = 3
    save("palette_trns.png", lambda p: pal.save(p, transparency=3))
    save("rgb16.png", lambda p: _save_png16_rgb(p, rgb))
    save("gray16.png", lambda p: Image.fromarray((rgb[..., 0].astype(np.uint16) * 3)).save(p))
    save("lossless.webp", lambda p: rgba.save(p, lossless=True, exact=True))
    save("lossy.webp", lambda p: im.save(p, quality=80))
    gif = im.quantize(colors=32, method=Image.Quantize.MEDIANCUT)
    second = Image.fromarray(255 - rgb).quantize(colors=32, method=Image.Quantize.MEDIANCUT)
    save("two_frames.gif", lambda p: gif.save(p, save_all=True, append_images=[second], duration=100,
                                               transparency=5, loop=0))
    save("rgb.tiff", lambda p: im.save(p, compression="tiff_lzw"))
    if features.check("avif"):
        save("rgb.avif", lambda p: im.save(p, quality=90))

    ref = {"pillow": PIL.__version__, "numpy": np.__version__, "images": {}}
    for name, path in sorted(made.items()):
        src = Image.open(path)
        out = hf_load(path)
        arr = np.asarray(out, dtype=np.uint8)
        with open(path + ".pil.rgb", "wb") as f:
            f.write(arr.tobytes())
        ref["images"][name] = {
            "pil_mode": src.mode,
            "width": out.width,
            "height": out.height,
            "rgb": name + ".pil.rgb",
        }
    with open(os.path.join(OUT, "pil_reference.json"), "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(ref, indent=1, sort_keys=True))


def _save_png16_rgb(path, rgb):
    # Pillow cannot write 16-bit RGB PNGs; write the PNG by hand (zlib + crc) so the low byte differs
    # from the high byte and truncation vs rounding is visible.
    import struct
    import zlib

    h, w, _ = rgb.shape
    v = rgb.astype(np.uint16) * 256 + (np.arange(w * h * 3).reshape(h, w, 3) * 37 % 256).astype(np.uint16)
    raw = b"".join(b"\x00" + v[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


if __name__ == "__main__":
    sys.exit(main())
