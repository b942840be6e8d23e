"""Read the official split files of the long-tailed benchmarks, checking every line.

Two formats, as released with the benchmarks:

* **Text lists** (ImageNet-LT and Places-LT, Liu et al. 2019, ``ImageNet_LT_{train,val,test}.txt`` /
  ``Places_LT_{train,val,test}.txt``; also the ``iNaturalist18_{train,val}.txt`` lists of Kang et al.'s
  classifier-balancing code): one image per line, ``relative/path.jpg label``, the path relative to the data
  root, the label an integer class id. Example: ``train/n01440764/n01440764_762.JPEG 0``.
* **COCO-style JSON** (iNaturalist 2018, ``train2018.json`` / ``val2018.json``): ``images`` (``id``,
  ``file_name`` relative to the data root), ``annotations`` (``image_id`` -> ``category_id``, one per image) and
  ``categories`` (``id``, ``name``). Class ids are the category ids in ascending order (iNat18's are 0..8141,
  so labels equal category ids, as in the papers' code).

Every problem (malformed line, label not an integer, negative or out of range, duplicate path, missing image
file; in JSON an annotation of an unknown image or category, an image without annotation) is reported with the
file and line (JSON: the array index), all at once, in a `SplitFileError`, before anything is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_REPORTED_PROBLEMS = 20


class SplitFileError(ValueError):
    """A split file has bad lines; the message lists them as ``file:line: problem``."""

    def __init__(self, path: str | os.PathLike, problems: Sequence[str]):
        self.path, self.problems = str(path), list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:MAX_REPORTED_PROBLEMS])
        more = len(self.problems) - MAX_REPORTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.problems)} problem(s) in split file {self.path}:\n{shown}{tail}")


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image of a split: its path relative to the data root, its class id, and where it was listed."""

    path: str
    label: int
    where: str  # "file:line" (text lists) or "file:images[i]" (JSON), for error messages


@dataclass
class SplitListing:
    """The records of one split file, plus the class names the file itself defines (JSON categories) if any."""

    file: str
    records: list[ImageRecord]
    category_names: list[str] | None = None
    category_ids: list[int] | None = None


def is_json_split_file(path: str | os.PathLike) -> bool:
    """True for a COCO-style JSON file (by its ``.json`` suffix), False for a text list."""
    return Path(path).suffix.lower() == ".json"


def _missing_file_problem(data_root: Path, relative: str) -> str | None:
    if not (data_root / relative).is_file():
        return f"image file {relative!r} not found under the data root {str(data_root)!r}"
    return None


def read_text_split(
    path: str | os.PathLike, data_root: str | os.PathLike, num_classes: int | None = None
) -> SplitListing:
    """Parse a ``relative/path.jpg label`` list; labels must lie in ``[0, num_classes)`` when it is given.

    Blank lines are skipped. The path is everything before the last run of whitespace, so paths with spaces work.
    Raises `SplitFileError` listing every bad line.
    """
    path, data_root = Path(path), Path(data_root)
    records: list[ImageRecord] = []
    problems: list[str] = []
    first_line_of: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            where = f"{path.name}:{line_no}"
            fields = text.rsplit(maxsplit=1)
            if len(fields) != 2:
                problems.append(f"{where}: malformed line {text!r} (expected 'relative/path.jpg label')")
                continue
            relative, label_text = fields
            try:
                label = int(label_text)
            except ValueError:
                problems.append(f"{where}: label {label_text!r} of {relative!r} is not an integer")
                continue
            if label < 0:
                problems.append(f"{where}: label {label} of {relative!r} is negative")
                continue
            if num_classes is not None and label >= num_classes:
                problems.append(f"{where}: label {label} of {relative!r} is out of range [0, {num_classes})")
                continue
            if relative in first_line_of:
                problems.append(
                    f"{where}: duplicate path {relative!r} (first listed on line {first_line_of[relative]})"
                )
                continue
            first_line_of[relative] = line_no
            missing = _missing_file_problem(data_root, relative)
            if missing:
                problems.append(f"{where}: {missing}")
                continue
            records.append(ImageRecord(relative, label, where))
    if problems:
        raise SplitFileError(path, problems)
    return SplitListing(file=str(path), records=records)


def _require_list(payload: dict, key: str, path: Path) -> list:
    value = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(value, list):
        raise SplitFileError(
            path,
            [
                f"{path.name}: missing or non-list key {key!r} (COCO-style files need 'images', "
                "'annotations' and 'categories')"
            ],
        )
    return value


def read_json_split(path: str | os.PathLike, data_root: str | os.PathLike) -> SplitListing:
    """Parse a COCO-style file (iNaturalist 2018): every image needs exactly one annotation of a known category.

    Labels are the positions of the category ids in ascending order. Raises `SplitFileError` listing every problem,
    each naming the array entry (``annotations[12]``).
    """
    path, data_root = Path(path), Path(data_root)
    with open(path, encoding="utf-8") as f:
        try:
            payload = json.load(f)
        except json.JSONDecodeError as err:
            raise SplitFileError(path, [f"{path.name}:{err.lineno}: not valid JSON ({err.msg})"]) from None
    images = _require_list(payload, "images", path)
    annotations = _require_list(payload, "annotations", path)
    categories = _require_list(payload, "categories", path)
    problems: list[str] = []
    name = path.name

    category_name: dict[int, str] = {}
    for i, category in enumerate(categories):
        cid = category.get("id") if isinstance(category, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool):
            problems.append(f"{name}:categories[{i}]: malformed entry {category!r} (needs an integer 'id')")
        elif cid in category_name:
            problems.append(f"{name}:categories[{i}]: duplicate category id {cid}")
        else:
            category_name[cid] = str(category.get("name", cid))
    category_ids = sorted(category_name)
    label_of_category = {cid: label for label, cid in enumerate(category_ids)}

    image_index: dict[object, int] = {}  # image id -> position in "images"
    first_index_of_file: dict[str, int] = {}
    for i, image in enumerate(images):
        image_id = image.get("id") if isinstance(image, dict) else None
        file_name = image.get("file_name") if isinstance(image, dict) else None
        if image_id is None or not isinstance(file_name, str):
            problems.append(f"{name}:images[{i}]: malformed entry {image!r} (needs 'id' and 'file_name')")
        elif image_id in image_index:
            problems.append(
                f"{name}:images[{i}]: duplicate image id {image_id!r} (first at images[{image_index[image_id]}])"
            )
        elif file_name in first_index_of_file:
            problems.append(
                f"{name}:images[{i}]: duplicate path {file_name!r} (first at images[{first_index_of_file[file_name]}])"
            )
        else:
            image_index[image_id] = i
            first_index_of_file[file_name] = i
            missing = _missing_file_problem(data_root, file_name)
            if missing:
                problems.append(f"{name}:images[{i}]: {missing}")

    label_of_image: dict[object, tuple[int, int]] = {}  # image id -> (label, annotation index)
    for j, annotation in enumerate(annotations):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        category_id = annotation.get("category_id") if isinstance(annotation, dict) else None
        if image_id is None or category_id is None:
            problems.append(
                f"{name}:annotations[{j}]: malformed entry {annotation!r} (needs 'image_id' and 'category_id')"
            )
        elif image_id not in image_index:
            problems.append(f"{name}:annotations[{j}]: image_id {image_id!r} is not in 'images'")
        elif category_id not in label_of_category:
            problems.append(f"{name}:annotations[{j}]: category_id {category_id!r} is not in 'categories'")
        elif image_id in label_of_image:
            first = label_of_image[image_id][1]
            problems.append(
                f"{name}:annotations[{j}]: image {image_id!r} has a second annotation (first at annotations[{first}]); "
                "single-label classification needs exactly one"
            )
        else:
            label_of_image[image_id] = (label_of_category[category_id], j)

    records = []
    for image_id, i in image_index.items():
        if image_id not in label_of_image:
            problems.append(f"{name}:images[{i}]: image {image_id!r} ({images[i]['file_name']!r}) has no annotation")
        else:
            records.append(ImageRecord(images[i]["file_name"], label_of_image[image_id][0], f"{name}:images[{i}]"))
    if problems:
        raise SplitFileError(path, problems)
    return SplitListing(
        file=str(path),
        records=records,
        category_names=[category_name[cid] for cid in category_ids],
        category_ids=category_ids,
    )


def read_split(path: str | os.PathLike, data_root: str | os.PathLike, num_classes: int | None = None) -> SplitListing:
    """`read_json_split` for ``.json`` files, `read_text_split` otherwise."""
    if is_json_split_file(path):
        return read_json_split(path, data_root)
    return read_text_split(path, data_root, num_classes)


def read_label_names(path: str | os.PathLike) -> list[str]:
    """Class names from a text file, one per line, line ``i`` naming class ``i``; names must be unique and non-empty."""
    path = Path(path)
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:  # a trailing newline is fine
        names.pop()
    problems = [f"{path.name}:{i + 1}: empty class name" for i, n in enumerate(names) if not n]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n and n in seen:
            problems.append(f"{path.name}:{i + 1}: duplicate class name {n!r} (first on line {seen[n] + 1})")
        seen.setdefault(n, i)
    if not names:
        problems.append(f"{path.name}: no class names")
    if problems:
        raise SplitFileError(path, problems)
    return names


def folder_label_names(records: Sequence[ImageRecord], num_classes: int) -> list[str] | None:
    """Class names from the image folders of a text list, when they identify the classes one to one.

    The folder of ``train/n01440764/n01440764_762.JPEG`` is ``n01440764`` (the path's directories after the
    split's top folder). Returns None when a class has no image, spans several folders, or two classes share one.
    """
    folders: dict[int, set[str]] = {}
    for record in records:
        parts = record.path.replace("\\", "/").split("/")
        folders.setdefault(record.label, set()).add("/".join(parts[1:-1]))
    if len(folders) != num_classes or any(len(f) != 1 or "" in f for f in folders.values()):
        return None
    names = [next(iter(folders[label])) for label in range(num_classes)]
    return names if len(set(names)) == num_classes else None
