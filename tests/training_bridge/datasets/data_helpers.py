"""Test data for datasets made on the spot: images, texts, archives (with the members attackers
put in them) and COCO folders."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile

from PIL import Image


def image(width: int = 32, height: int = 24, color=(200, 30, 30), fmt: str = "PNG") -> bytes:
    """An image of one colour."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, fmt)
    return out.getvalue()


def noise(width: int, height: int) -> bytes:
    """A PNG of random pixels (which does not compress: its size is about width*height*3)."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    return out.getvalue()


def zip_of(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A zip of files (name -> bytes) and symbolic links (name -> target)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) | 0x20
            zf.writestr(info, target)
    return out.getvalue()


def tar_of(
    files: dict[str, bytes],
    links: dict[str, str] | None = None,
    devices: tuple[str, ...] = (),
    gz: bool = False,
) -> bytes:
    """A tar (gzip-compressed with gz) of files, symbolic links and character devices."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gz else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        for name in devices:
            info = tarfile.TarInfo(name)
            info.type = tarfile.CHRTYPE
            info.devmajor, info.devminor = 1, 3
            tar.addfile(info)
    return out.getvalue()


def coco(images: list[dict], categories: list[str], boxes: list[tuple]) -> bytes:
    """COCO instances JSON: images [{"file_name", "width", "height"}] (ids 1..), categories by
    name (ids 1..), boxes (image index, category name, [x, y, w, h])."""
    ids = {name: i for i, name in enumerate(categories, 1)}
    data = {
        "images": [{"id": i, **img} for i, img in enumerate(images, 1)],
        "categories": [{"id": i, "name": name} for name, i in ids.items()],
        "annotations": [
            {"id": n, "image_id": index + 1, "category_id": ids[label], "bbox": list(bbox)}
            for n, (index, label, bbox) in enumerate(boxes, 1)
        ],
    }
    return json.dumps(data).encode()
