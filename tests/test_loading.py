"""Tests of the robust decoder: every conversion is exact, named, or the image is refused."""

from __future__ import annotations

import struct
import sys
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from image_helpers import encode, pixels, synthetic_rgb, write_image
from PIL import Image, ImageFile, ImageOps

from pytest_metatrace.data import DEFAULT_MAX_PIXELS, UnusableImage, load_rgb
from pytest_metatrace.data.loading import DecodeInfo, to_rgb

WHITE = (255, 255, 255)


def _palette_image() -> Image.Image:
    """A 3x2 palette image using indices 0, 1, 2 with distinct colours."""
    img = Image.new("P", (3, 2))
    img.putpalette([200, 10, 20, 30, 180, 40, 50, 60, 170] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2, 2, 1, 0])
    return img


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but whose pixel data is junk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- plain and converted
def test_rgb_png_is_returned_unchanged(tmp_path: Path) -> None:
    img = synthetic_rgb(31, 17)
    path = write_image(tmp_path / "a.png", img)
    out, info = load_rgb(path)
    assert out.mode == "RGB"
    assert np.array_equal(pixels(out), pixels(img))
    assert info == DecodeInfo(source_mode="RGB", size=(31, 17), conversions=[])
    # str paths and encoded bytes decode identically
    out_str, _ = load_rgb(str(path))
    out_bytes, info_bytes = load_rgb(path.read_bytes())
    assert out_str.tobytes() == out.tobytes() == out_bytes.tobytes()
    assert info_bytes == info


def test_cmyk_jpeg_is_converted_by_pillow(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cmyk = Image.fromarray(rng.integers(0, 256, (12, 20, 4), dtype=np.uint8), mode="CMYK")
    path = write_image(tmp_path / "cmyk.jpg", cmyk, quality=95)
    out, info = load_rgb(path)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
        expected = raw.convert("RGB")
    assert out.tobytes() == expected.tobytes()
    assert info.source_mode == "CMYK"
    assert info.conversions == ["cmyk->rgb"]
    assert info.size == (20, 12)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_by_its_bit_depth(tmp_path: Path, fmt: str) -> None:
    values = np.array([[0, 255, 256, 511, 0x1234, 0x8000, 0xFF00, 65535]], dtype=np.uint16)
    path = write_image(tmp_path / f"g16.{fmt.lower()}", Image.fromarray(values), fmt)
    out, info = load_rgb(path)
    expected = [0, 0, 1, 1, 0x12, 0x80, 0xFF, 255]
    arr = pixels(out)
    for channel in range(3):
        assert arr[0, :, channel].tolist() == expected
    assert info.source_mode == "I;16"
    assert info.conversions == ["i;16->rgb (>>8)"]


def test_big_endian_16_bit_grey(tmp_path: Path) -> None:
    values = np.array([[0x0102, 0xFEFF, 0x7F80]], dtype=">u2")
    path = write_image(tmp_path / "g16b.tif", Image.fromarray(values), "TIFF")
    out, info = load_rgb(path)
    assert pixels(out)[0, :, 1].tolist() == [0x01, 0xFE, 0x7F]
    assert info.conversions == ["i;16b->rgb (>>8)"]


@pytest.mark.parametrize(
    ("values", "shift", "expected"),
    [
        ([0, 256, 65535], 8, [0, 1, 255]),  # 16-bit data in a 32-bit container
        ([0, 1 << 24, 0x7FFFFFFF], 24, [0, 1, 127]),  # genuinely 32-bit data
    ],
)
def test_32_bit_grey_uses_the_range_it_holds(
    tmp_path: Path, values: list[int], shift: int, expected: list[int]
) -> None:
    img = Image.fromarray(np.array([values], dtype=np.int32), mode="I")
    path = write_image(tmp_path / "g32.tif", img, "TIFF")
    out, info = load_rgb(path)
    assert pixels(out)[0, :, 0].tolist() == expected
    assert info.source_mode == "I"
    assert info.conversions == [f"i->rgb (>>{shift})"]


def test_palette_without_transparency(tmp_path: Path) -> None:
    path = write_image(tmp_path / "p.png", _palette_image())
    out, info = load_rgb(path)
    assert pixels(out)[0].tolist() == [[200, 10, 20], [30, 180, 40], [50, 60, 170]]
    assert pixels(out)[1].tolist() == [[50, 60, 170], [30, 180, 40], [200, 10, 20]]
    assert info.source_mode == "P"
    assert info.conversions == ["p->rgb"]


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparent_index_is_flattened_on_white(tmp_path: Path, fmt: str) -> None:
    path = write_image(tmp_path / f"pt.{fmt.lower()}", _palette_image(), fmt, transparency=1)
    out, info = load_rgb(path)
    assert pixels(out)[0].tolist() == [[200, 10, 20], list(WHITE), [50, 60, 170]]
    assert pixels(out)[1].tolist() == [[50, 60, 170], list(WHITE), [200, 10, 20]]
    assert info.conversions == ["p+alpha->rgb (flattened on white)"]


def test_rgba_is_flattened_on_white(tmp_path: Path) -> None:
    rgba = np.array(
        [[[10, 20, 30, 0], [10, 20, 30, 255], [200, 100, 0, 128], [0, 0, 0, 64]]], dtype=np.uint8
    )
    path = write_image(tmp_path / "rgba.png", Image.fromarray(rgba, mode="RGBA"))
    out, info = load_rgb(path)
    arr = pixels(out)[0].astype(float)
    assert arr[0].tolist() == list(WHITE)  # fully transparent -> the white background
    assert arr[1].tolist() == [10, 20, 30]  # opaque -> its own colour, exactly
    for col in (2, 3):
        colour, alpha = rgba[0, col, :3].astype(float), rgba[0, col, 3] / 255
        blended = colour * alpha + 255 * (1 - alpha)
        assert np.all(np.abs(arr[col] - blended) <= 1), (arr[col], blended)
    assert info.source_mode == "RGBA"
    assert info.conversions == ["rgba+alpha->rgb (flattened on white)"]


def test_grey_with_alpha_is_flattened_on_white(tmp_path: Path) -> None:
    la = np.array([[[90, 0], [90, 255], [0, 255]]], dtype=np.uint8)
    path = write_image(tmp_path / "la.png", Image.fromarray(la, mode="LA"))
    out, info = load_rgb(path)
    assert pixels(out)[0].tolist() == [list(WHITE), [90, 90, 90], [0, 0, 0]]
    assert info.conversions == ["la+alpha->rgb (flattened on white)"]


@pytest.mark.parametrize(
    ("mode", "fill", "transparent", "kept"),
    [("L", 7, 7, 200), ("RGB", (1, 2, 3), (1, 2, 3), (200, 100, 50))],
)
def test_colour_marked_transparent_is_flattened(
    tmp_path: Path,
    mode: str,
    fill: int | tuple[int, ...],
    transparent: int | tuple[int, ...],
    kept: int | tuple[int, ...],
) -> None:
    img = Image.new(mode, (2, 1), fill)
    img.putpixel((1, 0), kept)
    path = write_image(tmp_path / "trns.png", img, transparency=transparent)
    out, info = load_rgb(path)
    kept_rgb = [kept] * 3 if isinstance(kept, int) else list(kept)
    assert pixels(out)[0].tolist() == [list(WHITE), kept_rgb]
    assert info.conversions == [f"{mode.lower()}+alpha->rgb (flattened on white)"]


def test_one_bit_image(tmp_path: Path) -> None:
    img = Image.new("1", (3, 1))
    img.putpixel((1, 0), 1)
    path = write_image(tmp_path / "bw.png", img)
    out, info = load_rgb(path)
    assert pixels(out)[0].tolist() == [[0, 0, 0], list(WHITE), [0, 0, 0]]
    assert info.source_mode == "1"
    assert info.conversions == ["1->rgb"]


def test_float_image_is_refused(tmp_path: Path) -> None:
    img = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32), mode="F")
    path = write_image(tmp_path / "f.tif", img, "TIFF")
    with pytest.raises(UnusableImage, match=r"floating-point image \(mode F\)"):
        load_rgb(path)


def test_unconvertible_mode_is_refused_not_raised_as_value_error() -> None:
    with pytest.raises(UnusableImage, match="cannot convert mode La to RGB"):
        to_rgb(Image.new("La", (2, 2)))


# --------------------------------------------------------------------------- EXIF orientation
def _marked(width: int = 48, height: int = 32) -> Image.Image:
    """Blue image with a red top-left and a green top-right block: every rotation differs."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:] = (0, 0, 255)
    arr[:12, :12] = (255, 0, 0)
    arr[:12, -12:] = (0, 255, 0)
    return Image.fromarray(arr)


# Where the red and green blocks land (corner names) once the orientation is applied.
_PLACEMENT = {
    3: ("bottom-right", "bottom-left"),  # rotated 180
    6: ("top-right", "bottom-right"),  # rotate 90 clockwise to display
    8: ("bottom-left", "top-left"),  # rotate 90 counter-clockwise to display
}


def _corner(arr: np.ndarray, where: str) -> np.ndarray:
    rows = slice(0, 6) if where.startswith("top") else slice(-6, None)
    cols = slice(0, 6) if where.endswith("left") else slice(-6, None)
    return np.asarray(arr[rows, cols].reshape(-1, 3).mean(axis=0))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = write_image(tmp_path / f"o{orientation}.{fmt.lower()}", _marked(), fmt, exif=exif)
    out, info = load_rgb(path)
    with Image.open(path) as raw:
        expected = ImageOps.exif_transpose(raw).convert("RGB")
    assert out.size == expected.size == ((48, 32) if orientation == 3 else (32, 48))
    assert out.tobytes() == expected.tobytes()
    assert info.size == out.size
    assert info.conversions == [f"exif-orientation {orientation} applied"]
    red_at, green_at = _PLACEMENT[orientation]
    arr = pixels(out).astype(float)
    assert np.abs(_corner(arr, red_at) - (255, 0, 0)).max() < 20
    assert np.abs(_corner(arr, green_at) - (0, 255, 0)).max() < 20


@pytest.mark.parametrize("orientation", [1, 0, 9])
def test_upright_or_invalid_orientation_changes_nothing(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = _marked()
    path = write_image(tmp_path / "o.png", img, exif=exif)
    out, info = load_rgb(path)
    assert out.tobytes() == img.tobytes()
    assert info.conversions == []


# --------------------------------------------------------------------------- refused files
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_refused(fmt: str) -> None:
    data = encode(synthetic_rgb(64, 48), fmt)
    with pytest.raises(UnusableImage, match="truncated or corrupt image data"):
        load_rgb(data[: len(data) // 2])


def test_truncated_file_is_refused_even_if_pillow_is_told_to_allow_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(synthetic_rgb(64, 48), "JPEG")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(UnusableImage, match="LOAD_TRUNCATED_IMAGES is set"):
        load_rgb(data[: len(data) // 2])


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UnusableImage, match="not an image Pillow can identify"):
        load_rgb(path)


def test_empty_missing_and_folder_paths_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnusableImage, match=r"empty file \(0 bytes\)"):
        load_rgb(tmp_path / "empty.png")
    with pytest.raises(UnusableImage, match="cannot read file: No such file"):
        load_rgb(tmp_path / "missing.png")
    with pytest.raises(UnusableImage, match=r"not a regular file \(a folder\)"):
        load_rgb(tmp_path)


def test_huge_image_is_refused_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(UnusableImage) as info:
        load_rgb(_png_header(100_000, 100_000))
    assert info.value.reason == (
        f"100000x100000 is over the {DEFAULT_MAX_PIXELS:,}-pixel limit "
        "(raise --metatrace-max-pixels to include it)"
    )


def test_max_pixels_boundary_is_inclusive() -> None:
    data = encode(synthetic_rgb(20, 10), "PNG")
    assert load_rgb(data, max_pixels=200)[0].size == (20, 10)
    with pytest.raises(UnusableImage, match="20x10 is over the 199-pixel limit"):
        load_rgb(data, max_pixels=199)


def test_max_pixels_replaces_pillows_bomb_guard() -> None:
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    side = int((2 * limit) ** 0.5) + 10  # Pillow alone raises DecompressionBombError
    with pytest.raises(UnusableImage) as info:
        load_rgb(_png_header(side, side), max_pixels=side * side)
    # Got past the header to the (junk) pixel data: the size was accepted.
    assert info.value.reason.startswith("truncated or corrupt image data")
    assert limit == Image.MAX_IMAGE_PIXELS


def test_concurrent_loads_leave_pillow_globals_alone() -> None:
    # Regression: each load used to save / set / restore Image.MAX_IMAGE_PIXELS,
    # so threads restored each other's None and left the guard off for good.
    old_interval = sys.getswitchinterval()
    limit = Image.MAX_IMAGE_PIXELS
    n_filters = len(warnings.filters)
    data = encode(Image.new("RGB", (4, 4)), "PNG")
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            sizes = list(pool.map(lambda _: load_rgb(data)[0].size, range(3000)))
    finally:
        sys.setswitchinterval(old_interval)
    assert sizes == [(4, 4)] * 3000
    assert limit == Image.MAX_IMAGE_PIXELS
    assert len(warnings.filters) == n_filters
