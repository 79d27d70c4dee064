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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

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
from pytest_metatrace.data.sources import IMAGE_EXTENSIONS

__all__ = [
    "CITY100_CAMERAS",
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

    def __len__(self) -> int:
        return len(self.subjects)

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
) -> PairedDataset:
    """Align checked photos by subject; report every subject without exactly one photo per type.

    ``items[i]`` is the usable item of ``candidates[i]`` (absent when the
    image was skipped). Raises :class:`DatasetError` unless there are exactly
    two camera types and at least two complete subjects.
    """
    types = sorted({cand[1] for cand in candidates})
    if len(types) != 2:
        raise DatasetError(
            f"pairs {id!r}: need exactly two camera types, found {len(types)} "
            f"({', '.join(types) or 'none'}); name the photos by type (phone.jpg, camera.jpg) or "
            "map file names to types with --metatrace-pairs-camera PATTERN=TYPE"
        )
    by_subject: dict[str, dict[str, list[int]]] = {}
    for i, (subject, camera, _path, _src) in enumerate(candidates):
        by_subject.setdefault(subject, {}).setdefault(camera, []).append(i)
    subjects: list[str] = []
    pairs: list[tuple[ImageItem, ImageItem]] = []
    incomplete: list[IncompleteSubject] = []
    for subject in sorted(by_subject):
        found = by_subject[subject]
        problems = []
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
    if len(subjects) < 2:
        raise DatasetError(
            f"pairs {id!r}: {len(subjects)} complete subject(s); retrieval needs at least two "
            f"(left out: {'; '.join(f'{s.subject}: {s.reason}' for s in incomplete[:5]) or '-'})"
        )
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
) -> tuple[dict[int, ImageItem], list[SkippedImage]]:
    from pytest_metatrace.data.index import ImageIndex

    rows: list[tuple[str, str, str, ImageSource, str | None, Mapping[str, str]]] = [
        (f"{s}/{c}", c, path, src, s, {}) for s, c, path, src in candidates
    ]
    index = ImageIndex(cache_dir)
    try:
        checked, skipped, _ = check_sources(
            rows, index=index, max_pixels=max_pixels, progress=progress
        )
    finally:
        index.close()
    by_path = {item.source.describe(): item for item in checked}
    items = {
        i: by_path[src.describe()]
        for i, (_s, _c, _p, src) in enumerate(candidates)
        if src.describe() in by_path
    }
    return items, skipped


def city100_pairs(
    *, cache_dir: Path, max_pixels: int = DEFAULT_MAX_PIXELS, progress: Any = None
) -> PairedDataset:
    """The packaged City100 pairs: 100 postcards, Nikon D5500 (camera) vs iPhone X (smartphone)."""
    candidates: list[Candidate] = []
    for folder, camera in CITY100_CAMERAS.items():
        for path in sorted((CITY100_DIR / folder).glob("*.jpg")):
            candidates.append((path.stem, camera, str(path), FileSource(str(path))))
    items, skipped = _check_files(
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
    )


def _folder_candidates(root: Path, mapping: Sequence[tuple[str, str]]) -> list[Candidate]:
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subjects:
        raise DatasetError(
            f"pairs folder {root} has no subject sub-folders; lay it out as "
            f"{root}/<subject>/<camera type>.jpg (one photo per camera type), or pass a "
            "CSV manifest path,subject,camera"
        )
    out: list[Candidate] = []
    for folder in subjects:
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            camera = camera_type_of(path, mapping)
            out.append((folder.name, camera, str(path), FileSource(str(path.resolve()))))
    return out


def _csv_candidates(manifest: Path) -> list[Candidate]:
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip() for f in (reader.fieldnames or [])]
            missing = [c for c in ("path", "subject", "camera") if c not in fields]
            if missing:
                raise DatasetError(
                    f"pairs manifest {manifest} lacks column(s) {missing}; found "
                    f"{fields or 'no header'}. The first row must be: path,subject,camera"
                )
            out: list[Candidate] = []
            for raw in reader:
                row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k}
                rel, subject, camera = row["path"], row["subject"], row["camera"]
                if not rel or not subject or not camera:
                    raise DatasetError(
                        f"{manifest}:{reader.line_num}: empty path, subject or camera"
                    )
                path = Path(rel) if Path(rel).is_absolute() else manifest.parent / rel
                out.append((subject, camera, str(path), FileSource(str(path.resolve()))))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"pairs manifest {manifest} is not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DatasetError(f"pairs manifest {manifest} is not valid CSV: {exc}") from None
    if not out:
        raise DatasetError(f"pairs manifest {manifest} lists no photos")
    return out


def load_pairs(
    spec: str,
    *,
    cache_dir: Path,
    mapping: Sequence[tuple[str, str]] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Any = None,
) -> PairedDataset:
    """Build the pairs a spec names (see the module docstring); errors say how to fix the input."""
    if spec == "city100":
        return city100_pairs(cache_dir=cache_dir, max_pixels=max_pixels, progress=progress)
    if spec.startswith("hf:"):
        from pytest_metatrace.data.pairs_hf import load_hf_pairs

        return load_hf_pairs(spec[3:], mapping=mapping, max_pixels=max_pixels)
    path = Path(spec).expanduser()
    if path.is_dir():
        candidates, kind = _folder_candidates(path, mapping), "folder"
    elif path.is_file() and path.suffix.lower() == ".csv":
        candidates, kind = _csv_candidates(path), "csv"
    else:
        raise DatasetError(
            f"pairs {spec!r} is neither 'city100', a folder (<subject>/<camera type>.jpg), a "
            "CSV manifest (path,subject,camera) nor hf:OWNER/NAME"
        )
    items, skipped = _check_files(
        candidates, cache_dir=cache_dir, max_pixels=max_pixels, progress=progress
    )
    return pairs_from_candidates(
        candidates,
        id=path.stem if kind == "csv" else path.name,
        name=str(path),
        kind=kind,
        root=str(path.resolve()),
        items=items,
        skipped=skipped,
    )
