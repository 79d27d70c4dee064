"""Paired photos: the same subjects, each photographed once by each of two camera types.

The cross-camera retrieval audit (docs/protocol.md §6, paper Sec. 4.2) needs,
for every subject, one photo per camera type (e.g. a smartphone and a DSLR).
A :class:`PairedDataset` holds those pairs, aligned by subject; subjects with
a missing, duplicated or unusable side are listed in ``incomplete`` and left
out, never paired with another subject's photo.

Specs (:func:`load_pairs`):

- ``city100``: the packaged City100 pairs (Nikon D5500 vs iPhone X, 100 postcards);
- a folder: one sub-folder per subject, one photo per camera type inside; the
  camera type is the file name's stem (``phone.jpg``, ``camera.jpg``) or the
  type given by the first matching ``PATTERN=TYPE`` mapping (shell pattern on
  the file name, case-insensitive; see :func:`camera_type_of`);
- a ``.csv`` manifest with columns ``path,subject,camera``;
- ``hf:OWNER/NAME[@SPLIT]``: a Hugging Face dataset with ``subject_idx``,
  ``model`` and ``image`` fields, e.g. ``hf:CTU-OU/PairCams`` (needs the
  ``pairs`` extra and the dataset in the local Hugging Face cache).

:meth:`PairedDataset.dataset` exposes the pairs as an ordinary
:class:`~pytest_metatrace.data.dataset.Dataset` (label: camera type, group:
subject), so their embeddings come from the shared cache like every other
audit's; a centre crop makes a second, harder view of the same pairs.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pytest_metatrace._files import TextFileError, read_text_file
from pytest_metatrace.data.dataset import (
    Credit,
    Dataset,
    DatasetError,
    FileSource,
    ImageItem,
    ImageSource,
    SkippedImage,
    check_sources,
)
from pytest_metatrace.data.loading import DEFAULT_MAX_PIXELS, DecodeInfo, load_rgb
from pytest_metatrace.data.walk import Walk, list_subfolders, resolve_path, walk_images

__all__ = [
    "CITY100_CAMERAS",
    "MIN_CROP_SIDE",
    "CropSource",
    "IncompleteSubject",
    "MemorySource",
    "PairedDataset",
    "camera_type_of",
    "city100_pairs",
    "load_pairs",
    "pairs_from_candidates",
    "parse_camera_mapping",
]

CITY100_DIR = Path(__file__).resolve().parent / "city100"
#: City100 folder -> camera type.
CITY100_CAMERAS: Mapping[str, str] = {"nikon_d5500": "camera", "iphone_x": "smartphone"}

#: (subject, camera type, path for messages, source) before the decode check.
Candidate = tuple[str, str, str, ImageSource]

#: Fewest pixels on each side of a centre crop: below it the encoder is shown
#: a blur of a few pixels (and at 0 pixels the resize divides by zero).
MIN_CROP_SIDE = 16


@dataclass(frozen=True)
class IncompleteSubject:
    """A subject left out of the pairs, with the reason."""

    subject: str  #: the subject's name
    reason: str  #: e.g. "no smartphone photo" or "2 camera photos"


@dataclass(frozen=True)
class MemorySource:
    """An encoded image held in memory (e.g. from a Hugging Face dataset)."""

    data: bytes  #: the encoded file
    name: str  #: how a person finds it (dataset and row)

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, DecodeInfo]:
        """Decode with :func:`~pytest_metatrace.data.loading.load_rgb`."""
        return load_rgb(self.data, max_pixels=max_pixels)

    def describe(self) -> str:
        """The dataset and row."""
        return self.name


@dataclass(frozen=True)
class CropSource:
    """The centred crop of another source that keeps ``area`` of its pixels.

    Each side is ``sqrt(area)`` of the original side, rounded half up, centred
    (the same rule as the centre mask, docs/protocol.md §3). Applied to both
    photos of a pair it keeps corresponding content, as the pairs are framed
    alike.
    """

    base: ImageSource  #: the full photo
    area: float  #: share of the area kept, in (0, 1]

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, DecodeInfo]:
        """Decode the base image and crop it."""
        from pytest_metatrace.processing.masking import mask_box

        img, info = self.base.load(max_pixels)
        box = mask_box(img.width, img.height, self.area)
        return img.crop(box), info

    def describe(self) -> str:
        """The base image and the crop."""
        return f"{self.base.describe()} [centre crop, {self.area:g} of the area]"


def crop_sides(width: int, height: int, area: float) -> tuple[int, int]:
    """(width, height) of the centre crop of :class:`CropSource` keeping ``area``."""
    from pytest_metatrace.processing.masking import mask_box

    left, top, right, bottom = mask_box(width, height, area)
    return right - left, bottom - top


def smallest_crop(sizes: Sequence[tuple[int, int]]) -> float | None:
    """The smallest crop area (two significant digits) keeping :data:`MIN_CROP_SIDE` pixels.

    Every photo of ``sizes`` keeps at least that many pixels on each side;
    None when a photo is smaller than that on a side (no crop can run).
    """
    need = 0.0
    for width, height in sizes:
        for side in (width, height):
            if side < MIN_CROP_SIDE:
                return None
            # mask_box keeps side - 2 * floor(side * (1 - sqrt(a)) / 2 + 0.5) pixels:
            # at least MIN_CROP_SIDE exactly when sqrt(a) > 1 - (2 * margin + 1) / side.
            margin = (side - MIN_CROP_SIDE) // 2
            root = 1.0 - (2 * margin + 1) / side
            if root > 0:
                need = max(need, root * root)
    if need == 0.0:  # no photos
        return None
    exponent = math.floor(math.log10(need)) - 1
    digits = math.ceil(need / 10.0**exponent)
    while True:
        # Written as decimal text first, so that the value shown is the value checked.
        value = min(float(f"{digits}e{exponent}"), 1.0)
        if value > need and all(min(crop_sides(w, h, value)) >= MIN_CROP_SIDE for w, h in sizes):
            return value
        digits += 1  # the bound is exclusive, and float rounding may land on it


def crop_digest(digest: str, area: float) -> str:
    """Cache key of a crop: it changes whenever the image or the crop does."""
    return hashlib.sha256(f"metatrace-crop-v1:{area!r}:{digest}".encode()).hexdigest()


@dataclass
class PairedDataset:
    """Subjects photographed by two camera types, aligned by subject."""

    id: str  #: short id for test ids and records (e.g. ``city100``)
    name: str  #: human-readable name
    kind: str  #: ``city100``, ``folder``, ``csv`` or ``hf``
    cameras: tuple[str, str]  #: the two camera types, sorted
    subjects: list[str]  #: complete subjects, sorted
    pairs: list[tuple[ImageItem, ImageItem]]  #: per subject: (photo of cameras[0], of cameras[1])
    incomplete: list[IncompleteSubject] = field(default_factory=list)  #: subjects left out
    skipped: list[SkippedImage] = field(default_factory=list)  #: unusable images
    credits: list[Credit] = field(default_factory=list)  #: attribution of shipped photos
    root: str | None = None  #: folder, manifest or hub id the pairs came from
    #: (photo, decoded (width, height)) of every paired photo, when known
    sizes: list[tuple[str, tuple[int, int]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.subjects)

    def check_crop(self, crop: float) -> None:
        """Refuse a centre crop that keeps fewer than :data:`MIN_CROP_SIDE` pixels a side.

        Checked against every paired photo's size once, when the pairs are
        loaded (:func:`load_pairs`); the message gives the smallest usable
        value. ``crop`` 1 (the crop protocol off) always passes.
        """
        if crop >= 1.0 or not self.sizes:
            return

        def kept_of(entry: tuple[str, tuple[int, int]]) -> tuple[int, int, str]:
            (width, height) = entry[1]
            return min(crop_sides(width, height, crop)), width * height, entry[0]

        name, (width, height) = min(self.sizes, key=kept_of)
        kept = crop_sides(width, height, crop)
        if min(kept) >= MIN_CROP_SIDE:
            return
        usable = smallest_crop([size for _name, size in self.sizes])
        fix = (
            f"use --metatrace-pairs-crop={usable:g} or more"
            if usable is not None
            else f"a photo has fewer than {MIN_CROP_SIDE} pixels on a side"
        )
        raise DatasetError(
            f"--metatrace-pairs-crop={crop:g} keeps {kept[0]}x{kept[1]} pixels of the smallest "
            f"photo ({name}, {width}x{height}); a crop needs at least {MIN_CROP_SIDE} pixels on "
            f"each side: {fix} (1 turns the crop protocol off)"
        )

    def dataset(self, crop: float = 1.0) -> Dataset:
        """The pairs as a :class:`Dataset` of items ``<subject>/<camera>``.

        Each item's label is its camera type, its group its subject.

        Its id is ``<pairs id>-pairs`` (``-pairs-crop<area>`` for crops).

        ``crop < 1`` replaces every photo by its centre crop keeping that
        share of the area (:class:`CropSource`), under a digest of its own so
        that crop and whole-frame embeddings never share a cache entry.
        """
        if not 0.0 < crop <= 1.0:
            raise DatasetError(f"crop area must lie in (0, 1], got {crop!r}")
        items: list[ImageItem] = []
        for subject, pair in zip(self.subjects, self.pairs, strict=True):
            for camera, item in zip(self.cameras, pair, strict=True):
                source: ImageSource = item.source
                digest = item.digest
                if crop < 1.0:
                    source, digest = CropSource(item.source, crop), crop_digest(digest, crop)
                meta = {"subject": subject, "camera": camera}
                items.append(
                    ImageItem(f"{subject}/{camera}", camera, digest, source, subject, meta)
                )
        # "-pairs": not the id of a single-photo dataset of the same images (e.g. the
        # acquisition audits' city100), whose description differs.
        suffix = "-pairs" if crop == 1.0 else f"-pairs-crop{crop:g}"
        return Dataset(
            id=self.id + suffix,
            name=self.name + ("" if crop == 1.0 else f" (centre crops, {crop:g} of the area)"),
            kind=f"pairs-{self.kind}",
            items=items,
            root=self.root,
            skipped=list(self.skipped),
            credits=list(self.credits),
            metadata_columns=["subject", "camera"],
            group_column="subject",
            extra={"pairs": self.describe()},
        )

    def sides(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Row indices into ``dataset.items`` of each camera type's photo, aligned by subject."""
        where = {it.id: i for i, it in enumerate(dataset.items)}
        try:
            rows = [[where[f"{s}/{c}"] for s in self.subjects] for c in self.cameras]
        except KeyError as exc:
            raise DatasetError(
                f"dataset {dataset.id!r} is not a view of pairs {self.id!r}: no item {exc}"
            ) from None
        return np.asarray(rows[0], dtype=np.int64), np.asarray(rows[1], dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for the report."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "root": self.root,
            "cameras": list(self.cameras),
            "n_subjects": len(self.subjects),
            "incomplete": [{"subject": s.subject, "reason": s.reason} for s in self.incomplete],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }


def _names(candidates: Sequence[Candidate], indices: Sequence[int]) -> str:
    """The file names of some candidates, for a message."""
    return ", ".join(Path(candidates[i][2]).name for i in indices)


def _common_types(by_subject: Mapping[str, Mapping[str, list[int]]], id: str) -> list[str]:
    """The two camera types held by the most subjects; raise when there is no clear two."""
    holders = Counter(camera for found in by_subject.values() for camera in found)
    ranked = sorted(holders, key=lambda t: (-holders[t], t))
    if len(ranked) == 2 or (len(ranked) > 2 and holders[ranked[2]] < holders[ranked[1]]):
        return sorted(ranked[:2])
    held = (
        f", and no two are held by more subjects than the others "
        f"({', '.join(f'{t}: {holders[t]} subject(s)' for t in ranked)})"
        if len(ranked) > 2
        else ""
    )
    raise DatasetError(
        f"pairs {id!r}: need exactly two camera types, found {len(ranked)} "
        f"({', '.join(sorted(ranked)) or 'none'}){held}; name the photos by type (phone.jpg, "
        "camera.jpg) or map file names to types with --metatrace-pairs-camera PATTERN=TYPE"
    )


def pairs_from_candidates(
    candidates: Sequence[Candidate],
    *,
    id: str,
    name: str,
    kind: str,
    root: str | None,
    items: Mapping[int, ImageItem],
    skipped: Sequence[SkippedImage] = (),
    credits: Sequence[Credit] = (),
    sizes: Mapping[int, tuple[int, int]] | None = None,
    left_out: Sequence[IncompleteSubject] = (),
) -> PairedDataset:
    """Align checked photos by subject; report every subject without exactly one photo per type.

    ``items[i]`` is the usable item of ``candidates[i]`` (absent when the
    image was skipped), ``sizes[i]`` its decoded size where known. The camera
    types are the two most subjects hold; a subject holding another (stray)
    type is left out and named, like one missing a side. ``left_out`` are
    subjects lost before any photo was listed (a folder that cannot be read).
    Raises :class:`DatasetError` unless two types stand out and at least two
    subjects are complete.
    """
    by_subject: dict[str, dict[str, list[int]]] = {}
    for i, (subject, camera, _path, _src) in enumerate(candidates):
        by_subject.setdefault(subject, {}).setdefault(camera, []).append(i)
    types = _common_types(by_subject, id)
    subjects: list[str] = []
    pairs: list[tuple[ImageItem, ImageItem]] = []
    incomplete: list[IncompleteSubject] = list(left_out)
    for subject in sorted(by_subject):
        found = by_subject[subject]
        problems = [
            f"stray camera type {camera!r} ({_names(candidates, found[camera])}); "
            f"the pairs' types are {types[0]} and {types[1]}"
            for camera in sorted(set(found) - set(types))
        ]
        for camera in types:
            listed = found.get(camera, [])
            usable = [i for i in listed if i in items]
            if len(listed) > 1:
                problems.append(f"{len(listed)} {camera} photos")
            elif not listed:
                problems.append(f"no {camera} photo")
            elif not usable:
                problems.append(f"{camera} photo unusable")
        if problems:
            incomplete.append(IncompleteSubject(subject, "; ".join(problems)))
            continue
        subjects.append(subject)
        pairs.append((items[found[types[0]][0]], items[found[types[1]][0]]))
    incomplete.sort(key=lambda s: s.subject)
    if len(subjects) < 2:
        raise DatasetError(
            f"pairs {id!r}: {len(subjects)} complete subject(s); retrieval needs at least two "
            f"(left out: {'; '.join(f'{s.subject}: {s.reason}' for s in incomplete[:5]) or '-'})"
        )
    known = sizes or {}
    paired = {i for subject in subjects for camera in types for i in by_subject[subject][camera]}
    return PairedDataset(
        id=id,
        name=name,
        kind=kind,
        cameras=(types[0], types[1]),
        subjects=subjects,
        pairs=pairs,
        incomplete=incomplete,
        skipped=list(skipped),
        credits=list(credits),
        root=root,
        sizes=[(candidates[i][2], known[i]) for i in sorted(paired) if i in known],
    )


def parse_camera_mapping(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``PATTERN=TYPE`` lines -> ordered (pattern, type) pairs; the first match wins."""
    out: list[tuple[str, str]] = []
    for line in lines:
        pattern, sep, camera = line.partition("=")
        if not sep or not pattern.strip() or not camera.strip():
            raise DatasetError(
                f"camera mapping {line!r} must be PATTERN=TYPE, e.g. 'iphone*=smartphone'"
            )
        out.append((pattern.strip().lower(), camera.strip()))
    return out


def camera_type_of(path: str | Path, mapping: Sequence[tuple[str, str]] = ()) -> str:
    """The camera type of the photo at ``path`` in a pairs folder.

    The first ``(pattern, type)`` of ``mapping`` whose shell pattern matches
    the lower-cased file name wins; without a match the file name's stem is
    the type. This is the one place where a type is read from a photo: EXIF
    (make/model through the acquisition audits' normalizer) plugs in here,
    between the mapping and the stem fallback.
    """
    name = Path(path).name
    lowered = name.lower()
    for pattern, camera in mapping:
        if fnmatch.fnmatchcase(lowered, pattern):
            return camera
    return Path(name).stem


def _check_files(
    candidates: Sequence[Candidate], *, cache_dir: Path, max_pixels: int, progress: Any
) -> tuple[dict[int, ImageItem], list[SkippedImage], dict[int, tuple[int, int]]]:
    """Digest and decode-check the candidates: usable items, skipped photos, decoded sizes."""
    from pytest_metatrace.data.index import ImageIndex

    rows: list[tuple[str, str, str, ImageSource, str | None, Mapping[str, str]]] = [
        (f"{s}/{c}", c, path, src, s, {}) for s, c, path, src in candidates
    ]
    index = ImageIndex(cache_dir)
    try:
        checked, skipped, _ = check_sources(
            rows, index=index, max_pixels=max_pixels, progress=progress
        )
        size_of = {}
        for item in checked:
            check = index.get_check(item.digest, max_pixels)
            if check is not None:
                size_of[item.digest] = check.size
    finally:
        index.close()
    by_path = {item.source.describe(): item for item in checked}
    items = {
        i: by_path[src.describe()]
        for i, (_s, _c, _p, src) in enumerate(candidates)
        if src.describe() in by_path
    }
    sizes = {i: size_of[item.digest] for i, item in items.items() if item.digest in size_of}
    return items, skipped, sizes


def city100_pairs(
    *, cache_dir: Path, max_pixels: int = DEFAULT_MAX_PIXELS, progress: Any = None
) -> PairedDataset:
    """The packaged City100 pairs: 100 postcards, Nikon D5500 (camera) vs iPhone X (smartphone)."""
    candidates: list[Candidate] = []
    for folder, camera in CITY100_CAMERAS.items():
        for path in sorted((CITY100_DIR / folder).glob("*.jpg")):
            candidates.append((path.stem, camera, str(path), FileSource(str(path))))
    items, skipped, sizes = _check_files(
        candidates, cache_dir=cache_dir, max_pixels=max_pixels, progress=progress
    )
    credit = Credit(
        title="City100 (Camera Lens Super-Resolution, CVPR 2019)",
        author="Chang Chen, Zhiwei Xiong, Xinmei Tian, Zheng-Jun Zha, Feng Wu",
        license="MIT",
        url="https://github.com/ngchc/CameraSR",
        note="100 postcards photographed with a Nikon D5500 and an iPhone X",
    )
    return pairs_from_candidates(
        candidates,
        id="city100",
        name="City100 pairs (Nikon D5500 vs iPhone X)",
        kind="city100",
        root=str(CITY100_DIR),
        items=items,
        skipped=skipped,
        credits=[credit],
        sizes=sizes,
    )


@dataclass
class _Listed:
    """What a pairs folder or manifest lists, before any photo is read."""

    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)  #: entries unusable as listed
    left_out: list[IncompleteSubject] = field(default_factory=list)  #: subjects lost whole


def _folder_candidates(root: Path, mapping: Sequence[tuple[str, str]]) -> _Listed:
    subjects, skipped = list_subfolders(root, kind="subject")
    if not subjects:
        raise DatasetError(
            f"pairs folder {root} has no subject sub-folders; lay it out as "
            f"{root}/<subject>/<camera type>.jpg (one photo per camera type), or pass a "
            "CSV manifest path,subject,camera"
        )
    out = _Listed(skipped=skipped)
    for folder in subjects:
        walk = walk_images(folder, root=root, recursive=False, into=Walk())
        for entry in walk.skipped:
            out.skipped.append(entry)
            if entry.path == str(folder):  # the subject folder itself cannot be read
                reason = entry.reason.split(";")[0]
                out.left_out.append(IncompleteSubject(folder.name, reason))
        for found in walk.files:
            camera = camera_type_of(found.path, mapping)
            out.candidates.append(
                (folder.name, camera, str(found.path), FileSource(found.resolved))
            )
    return out


def _csv_candidates(manifest: Path) -> _Listed:
    try:
        text = read_text_file(manifest, what="pairs manifest")
    except TextFileError as exc:
        raise DatasetError(str(exc)) from None
    out = _Listed()
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [f.strip() for f in (reader.fieldnames or [])]
        missing = [c for c in ("path", "subject", "camera") if c not in fields]
        if missing:
            raise DatasetError(
                f"pairs manifest {manifest} lacks column(s) {missing}; found "
                f"{fields or 'no header'}. The first row must be: path,subject,camera"
            )
        for raw in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k}
            rel, subject, camera = row["path"], row["subject"], row["camera"]
            if not rel or not subject or not camera:
                raise DatasetError(f"{manifest}:{reader.line_num}: empty path, subject or camera")
            where = f"{manifest}:{reader.line_num}: {rel!r}"
            if "\x00" in rel:
                out.skipped.append(SkippedImage(where, "path contains a NUL byte", camera))
                continue
            path = Path(rel) if Path(rel).is_absolute() else manifest.parent / rel
            resolved, why = resolve_path(path)
            if resolved is None:
                out.skipped.append(SkippedImage(where, why, camera))
                continue
            out.candidates.append((subject, camera, str(path), FileSource(resolved)))
    except csv.Error as exc:
        raise DatasetError(f"pairs manifest {manifest} is not valid CSV: {exc}") from None
    if not out.candidates and not out.skipped:
        raise DatasetError(f"pairs manifest {manifest} lists no photos")
    return out


def load_pairs(
    spec: str,
    *,
    cache_dir: Path,
    mapping: Sequence[tuple[str, str]] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Any = None,
    crop: float = 1.0,
) -> PairedDataset:
    """Build the pairs a spec names (see the module docstring); errors say how to fix the input.

    ``crop`` is the centre-crop area the audit will use: one that keeps too
    few pixels of the smallest photo is refused here, once
    (:meth:`PairedDataset.check_crop`).
    """
    if spec == "city100":
        pairs = city100_pairs(cache_dir=cache_dir, max_pixels=max_pixels, progress=progress)
    elif spec.startswith("hf:"):
        from pytest_metatrace.data.pairs_hf import load_hf_pairs

        pairs = load_hf_pairs(spec[3:], mapping=mapping, max_pixels=max_pixels)
    else:
        pairs = _local_pairs(
            spec, cache_dir=cache_dir, mapping=mapping, max_pixels=max_pixels, progress=progress
        )
    pairs.check_crop(crop)
    return pairs


def _local_pairs(
    spec: str,
    *,
    cache_dir: Path,
    mapping: Sequence[tuple[str, str]],
    max_pixels: int,
    progress: Any,
) -> PairedDataset:
    path = Path(spec).expanduser()
    if path.is_dir():
        listed, kind = _folder_candidates(path, mapping), "folder"
    elif path.suffix.lower() == ".csv" and path.exists():
        listed, kind = _csv_candidates(path), "csv"
    else:
        raise DatasetError(
            f"pairs {spec!r} is neither 'city100', a folder (<subject>/<camera type>.jpg), a "
            "CSV manifest (path,subject,camera) nor hf:OWNER/NAME"
        )
    items, skipped, sizes = _check_files(
        listed.candidates, cache_dir=cache_dir, max_pixels=max_pixels, progress=progress
    )
    return pairs_from_candidates(
        listed.candidates,
        id=path.stem if kind == "csv" else path.name,
        name=str(path),
        kind=kind,
        root=str(path.resolve()),
        items=items,
        skipped=listed.skipped + skipped,
        sizes=sizes,
        left_out=listed.left_out,
    )
