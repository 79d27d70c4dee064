"""The acquisition audit end to end through ``pytester``, on photos labelled by EXIF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, make_tiny_dataset

pytest_plugins = ["pytester"]


def make_exif_folder(root: Path, owners: int = 4, per_device: int = 6) -> Path:
    """``root/<owner>/`` photos: an iPhone's are noisy (high frequencies), a Canon's smooth.

    The exposure is drawn independently of the device, so it carries no trace.
    """
    rng = np.random.default_rng(7)
    _, xx = np.mgrid[0:48, 0:48]
    for o in range(owners):
        folder = root / f"owner{o}"
        folder.mkdir(parents=True)
        for k in range(2 * per_device):
            phone = k % 2 == 0
            base = 90 + 30 * np.sin(xx * 0.2 + k)[..., None] + rng.integers(0, 60, 3)
            noise = rng.normal(0, 30 if phone else 2, (48, 48, 3))
            img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
            exif = Image.Exif()
            exif[0x010F] = "Apple" if phone else "Canon\x00 "
            exif[0x0110] = "iPhone 12" if phone else "Canon EOS 70D"
            sub = exif.get_ifd(0x8769)
            sub[0x829A] = TiffImagePlugin.IFDRational(1, 60 if rng.random() < 0.5 else 250)
            img.save(folder / f"p{k:02d}.jpg", quality=95, exif=exif)
    Image.new("RGB", (48, 48), (9, 9, 9)).save(root / "owner0" / "noexif.jpg")
    return root


@pytest.fixture
def exif_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TINY_CONFTEST)
    make_tiny_dataset(pytester.path / "tinyset")
    make_exif_folder(pytester.path / "photos")
    copy_audits(pytester.path, ("test_acquisition_traces.py",))
    return pytester


def test_exif_folder_audit_end_to_end(exif_project):
    pytester = exif_project
    result = pytester.runpytest(
        *FAST,
        "--metatrace-exif-data=photos",
        "--metatrace-min-per-class=5",
        "--metatrace-mask-ratio=0.5",
        "--metatrace-sweep-data=tinyset",
        "--metatrace-json=out.json",
        "--metatrace-threshold=probe.smartphone=0.6",
        "--metatrace-threshold=probe.exposure=0.99",
        "--metatrace-threshold=agreement.*=1.0",
        "--metatrace-probe-mode=lbfgs",
        "-rs",
        "audits",
    )
    # ran: targets, smartphone + exposure probes and agreements, sweep, map;
    # the smartphone trace is strong, so its 0.6 gate fails
    result.assert_outcomes(passed=6, failed=1, skipped=12)
    out = result.stdout.str()
    assert "probe.smartphone: the smartphone trace (masked 0.5) of tiny on photos" in out
    assert "make: its classes split these images exactly as 'smartphone' does" in out
    assert "iso: no image has a value for it" in out
    assert "noexif.jpg: no exif" in out
    doc = json.loads((pytester.path / "out.json").read_text())
    recs = {(r["audit"], r["parameter"]): r for r in doc["records"]}
    phone = recs[("acquisition_probe", "smartphone")]
    assert phone["value"] >= 0.9 and phone["chance"] == 0.5 and not phone["gate"]["passed"]
    assert phone["details"]["split"]["group_disjoint"] is True
    targets = recs[("acquisition_targets", None)]["details"]
    assert sorted(targets["splits"]) == ["exposure", "smartphone"]
    assert "disjoint by sub-folder" in targets["grouping_note"]
    sweep = recs[("mask_sweep", "smartphone")]["details"]
    assert sweep["ratios"] == [0.0, 0.5, 0.75, 0.9, 0.95, 1.0]
    assert sweep["probe_accuracy"][-1] == 0.5  # all black: nothing to read
    (dataset,) = doc["datasets"]
    assert dataset["notes"]["no_exif"] == 1 and dataset["kind"] == "exif"
    html = (pytester.path / "reports" / "metatrace.html").read_text()
    for title in ("Acquisition probes (Fig. 6)", "Neighbour agreement (Table 2)", "Mask sweep"):
        assert title in html
