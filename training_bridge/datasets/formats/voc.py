"""PASCAL VOC: one XML file per image (`<annotation>` with filename, size and objects with a
bndbox), next to the image or in an Annotations/ folder beside JPEGImages/; splits in
ImageSets/Main/train.txt and val.txt (the XML files' paths without .xml).

XML is parsed by expat, which refuses entity expansion attacks (expat >= 2.4) and never
fetches external entities.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

from ..annotations import round_coordinate
from . import (
    IMAGE_SUFFIXES,
    TRAIN,
    VALIDATION,
    Export,
    Folder,
    FormatError,
    Imported,
    Samples,
    check_key,
    image_size,
    safe_relative,
    split_name,
)

SPLIT_FILES = {"train": TRAIN, "val": VALIDATION}
COORDINATES = ("xmin", "ymin", "xmax", "ymax")


def parse(path: Path, where: str) -> tuple[str | None, int, int, list[dict]] | None:
    """A VOC file's image filename, width, height (0: not given) and objects as annotations;
    None when the XML is not a VOC annotation."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as e:
        raise FormatError(f"{where} is not well-formed XML: {e}.") from None
    if root.tag != "annotation":
        return None
    size = root.find("size")
    width = _int(size.findtext("width"), where, "width") if size is not None else 0
    height = _int(size.findtext("height"), where, "height") if size is not None else 0
    objects = []
    for n, obj in enumerate(root.findall("object"), 1):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if box is None:
            raise FormatError(f"{where}: object {n} ({name!r}) has no <bndbox>.")
        coords = []
        for tag in COORDINATES:
            text = box.findtext(tag)
            try:
                coords.append(round_coordinate(float(text)))
            except (TypeError, ValueError):
                raise FormatError(
                    f"{where}: object {n} ({name!r}) has <{tag}> {text!r}, not a number."
                ) from None
        objects.append({"label": name, "box": coords})
    filename = root.findtext("filename")
    return (filename.strip() if filename else None), width, height, objects


def _int(text, where: str, what: str) -> int:
    if text is None or not text.strip():
        return 0
    try:
        return max(int(float(text)), 0)
    except ValueError:
        raise FormatError(f"{where}: the image {what} {text!r} is not a number.") from None


def read(folder: Path, dataset_type: str, fmt: str = "voc") -> Imported:
    """The samples of the VOC files in folder, with the images they name."""
    files = Folder(folder)
    splits = _splits(files)
    samples = Samples(dataset_type)
    for xml in files.walk({".xml"}):
        where = files.key(xml)
        parsed = parse(xml, where)
        if parsed is None:
            continue
        filename, width, height, objects = parsed
        rel = PurePosixPath(where)
        image = _image(files, rel, filename, where)
        if not (width and height):
            width, height = image_size(image, where)
        split = next((splits[i] for i in _ids(rel) if i in splits), "")
        samples.add(where, files.key(image), objects, width=width, height=height, split=split)
    if not samples.samples:
        raise FormatError(
            "No PASCAL VOC annotation: expected one .xml file per image (<annotation> with "
            "filename, size and objects), next to the images or in Annotations/."
        )
    return samples.result()


def _ids(rel: PurePosixPath) -> list[str]:
    """The names ImageSets files may give a VOC file: its path without .xml, from the folder
    or from its Annotations/ folder."""
    ids = [rel.with_suffix("").as_posix()]
    if "Annotations" in rel.parts[:-1]:
        at = len(rel.parts) - 1 - rel.parts[::-1].index("Annotations")
        ids.append(PurePosixPath(*rel.parts[at + 1 :]).with_suffix("").as_posix())
    return ids


def _splits(files: Folder) -> dict[str, str]:
    """VOC id -> split, from ImageSets/Main/train.txt and val.txt."""
    splits: dict[str, str] = {}
    for path in files.walk({".txt"}):
        if path.parent.name != "Main" or path.parent.parent.name != "ImageSets":
            continue
        split = SPLIT_FILES.get(path.stem)
        if split is None:
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise FormatError(f"{files.key(path)} is not UTF-8 text.") from None
        for line in lines:
            if line.strip():
                splits.setdefault(line.split()[0], split)
    return splits


def _image(files: Folder, rel: PurePosixPath, filename: str | None, where: str) -> Path:
    """The image a VOC file names: next to it, in JPEGImages/ beside its Annotations/ folder,
    or at the folder's top."""
    here = rel.parent
    bases = [here]
    if here.name == "Annotations":
        bases.append(here.parent / "JPEGImages")
    bases += [PurePosixPath(), PurePosixPath("JPEGImages")]
    bases = list(dict.fromkeys(bases))
    if filename:
        name = safe_relative(filename, where, "filename")
        found = files.find(name, bases, where)
        if found is None:
            raise FormatError(f"{where}: the image {filename} it names is not in the folder.")
        return found[1]
    for base in bases:
        for suffix in sorted(IMAGE_SUFFIXES):
            path = files.file(base / (rel.stem + suffix), where)
            if path is not None:
                return path
    raise FormatError(f"{where} names no <filename> and no image {rel.stem}.* is beside it.")


def write(
    samples: list[dict], labels: list, dataset_type: str, out: Path, source_of, *, fmt="voc"
) -> None:
    """Each image at its key with its VOC file beside it (<stem>.xml), and ImageSets/Main."""
    export = Export(out, source_of)
    taken: set[PurePosixPath] = set()
    lists: dict[str, list[str]] = {TRAIN: [], VALIDATION: []}
    for sample in samples:
        key = check_key(sample["key"])
        export.place(sample, key)
        xml = key.with_suffix(".xml")
        if xml in taken:  # images.jpg and images.png: the second keeps its suffix
            xml = key.with_name(key.name + ".xml")
        taken.add(xml)
        width, height = export.size(sample)
        export.write(xml, _xml(sample, key, width, height))
        split = split_name(sample)
        if split:
            lists[split].append(xml.with_suffix("").as_posix())
    for stem, split in SPLIT_FILES.items():
        if lists[split]:
            rel = PurePosixPath("ImageSets", "Main", f"{stem}.txt")
            export.write(rel, "".join(f"{i}\n" for i in lists[split]))


def _xml(sample: dict, key: PurePosixPath, width: int, height: int) -> bytes:
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = key.parent.name
    ElementTree.SubElement(root, "filename").text = key.name
    size = ElementTree.SubElement(root, "size")
    ElementTree.SubElement(size, "width").text = str(width)
    ElementTree.SubElement(size, "height").text = str(height)
    ElementTree.SubElement(size, "depth").text = "3"
    ElementTree.SubElement(root, "segmented").text = "0"
    for a in sample.get("annotations") or ():
        obj = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(obj, "name").text = a["label"]
        ElementTree.SubElement(obj, "pose").text = "Unspecified"
        ElementTree.SubElement(obj, "truncated").text = "0"
        ElementTree.SubElement(obj, "difficult").text = "0"
        box = ElementTree.SubElement(obj, "bndbox")
        for tag, value in zip(COORDINATES, a["box"], strict=True):
            ElementTree.SubElement(box, tag).text = str(value)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"
