#!/usr/bin/env python3
"""Writes the small seed inputs of the reference-file and image fuzz targets into corpus/.

Our own synthetic data only (no third-party images): a 4x8 reference set in the daemon's
format, and tiny gray/RGB images in each format the daemon decodes.
"""
import io
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def references(path, count=4, dim=8, **meta_overrides):
    rng = random.Random(7)
    data = b"".join(struct.pack("<f", rng.uniform(-1, 1)) for _ in range(count * dim))
    meta = {
        "format": "inspectord-references",
        "format_version": "1",
        "embedding_dim": str(dim),
        "count": str(count),
        "threshold": "0.5",
        "model_sha256": "ab" * 32,
        "score": "eta",
        "k": "1",
        "eta_p": "2",
        "gamma_p": "6",
    }
    meta.update(meta_overrides)
    header = {
        "references": {"dtype": "F32", "shape": [count, dim], "data_offsets": [0, len(data)]},
        "__metadata__": meta,
    }
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def images(dirpath):
    from PIL import Image  # models/requirements.txt has Pillow

    gray = Image.new("L", (16, 12))
    gray.putdata([(x * 16 + y * 5) % 256 for y in range(12) for x in range(16)])
    rgb = Image.merge("RGB", (gray, gray.transpose(Image.FLIP_LEFT_RIGHT), gray))
    for name, img, fmt in [
        ("gray.png", gray, "PNG"),
        ("rgb.png", rgb, "PNG"),
        ("gray.jpg", gray, "JPEG"),
        ("rgb.bmp", rgb, "BMP"),
        ("gray.tif", gray, "TIFF"),
        ("gray.pgm", gray, "PPM"),
    ]:
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        with open(os.path.join(dirpath, name), "wb") as f:
            f.write(buf.getvalue())


if __name__ == "__main__":
    refs = os.path.join(HERE, "corpus", "references")
    references(os.path.join(refs, "small.safetensors"))
    references(os.path.join(refs, "gamma-k3.safetensors"), score="gamma", k="3", eta_p="1", gamma_p="4")
    images(os.path.join(HERE, "corpus", "image"))
