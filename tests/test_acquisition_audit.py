"""The acquisition audit end to end through ``pytester``, on photos labelled by EXIF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, make_tiny_dataset, preimport
from test_acquisition import CONFOUNDED

pytest_plugins = ["pytester"]
preimport(
    "sklearn.linear_model",
    "sklearn.manifold",
    "pytest_metatrace.audits.acquisition_traces.mask_sweep",
    "pytest_metatrace.audits.acquisition_traces.agreement",
)


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
    # the smartphone trace is strong, so its 0.6 gate fails; a 0.99 gate on 8 test
    # images cannot fail whatever they score, so the exposure probe is undecided (skipped)
    result.assert_outcomes(passed=5, failed=1, skipped=13)
    out = result.stdout.str()
    assert "probe.exposure: too few test images to decide: 8, need at least" in out
    assert "1 gate(s) failed (1 above threshold, 0 grew against the baseline), 1 undecided" in out
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
    # owners hold many photos each, not pairs: the named labelled set gives a kNN curve
    assert (sweep["semantic"]["source"], sweep["semantic"]["dataset"]) == ("labelled", "tinyset")
    assert recs[("mask_sweep", "smartphone")]["metric"] == "semantic_knn_top1_at_mask"
    # agreement leaves each photo's own owner out: 36 candidates, so k = 50 is left out
    agree = recs[("neighbour_agreement", "smartphone")]
    assert agree["details"]["own_group"] == "excluded" and agree["details"]["ks"] == [10, 25]
    assert agree["details"]["group_column"] == "sub-folder" and agree["details"]["n_groups"] == 4
    assert agree["chance"] == pytest.approx(18 / 36)  # 24 - 6 of a label among 48 - 12
    assert agree["details"]["chance_with_own_group"] == pytest.approx(23 / 47)
    # 4 owners x 6 photos per class: the test side (6 per class) is one owner, and it says so
    (test_owner,) = phone["details"]["split"]["confounds"]
    assert test_owner["kind"] == "test_group" and test_owner["total"] == 12
    assert (
        "metatrace: acquisition data photos: smartphone: confounded split: all 12 test images "
        f"come from one sub-folder, {test_owner['group']!r}; its accuracy describes that "
        "group's photos only. Add photos from other groups"
    ) in out
    assert "smartphone" in targets["confound_warnings"]
    (dataset,) = doc["datasets"]
    assert dataset["notes"]["no_exif"] == 1 and dataset["kind"] == "exif"
    html = (pytester.path / "reports" / "metatrace.html").read_text()
    for title in ("Acquisition probes (Fig. 6)", "Neighbour agreement (Table 2)", "Mask sweep"):
        assert title in html
    assert "Confounded split" in html and "own sub-folder left out" in html


def make_postcards(root: Path, cards: int = 12) -> Path:
    """``cards.csv``: each postcard (the group) shot by a camera (smooth) and a phone (noisier).

    The postcard's colour and stripe frequency are its content, shared by both photos and
    strong enough for the tiny encoder to find every twin unmasked.
    """
    rng = np.random.default_rng(3)
    _, xx = np.mgrid[0:48, 0:48]
    root.mkdir(parents=True)
    rows = ["path,label,group,make,model,smartphone"]
    for c in range(cards):
        base = rng.integers(20, 230, 3) + 60 * np.sin(xx * (0.1 + 0.2 * c))[..., None]
        for device, noise, make, model in (
            ("camera", 1, "Nikon", "Nikon D5500"),
            ("smartphone", 4, "Apple", "Apple iPhone X"),
        ):
            img = np.clip(base + rng.normal(0, noise, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"{c:03d}_{device}.png")
            rows.append(f"{c:03d}_{device}.png,postcard,{c:03d},{make},{model},{device}")
    (root / "cards.csv").write_text("\n".join(rows) + "\n")
    return root / "cards.csv"


def test_paired_photos_give_the_sweep_its_pairs_curve_and_agreement_drops_the_twin(
    pytester: pytest.Pytester,
):
    pytester.makeconftest(TINY_CONFTEST)
    make_postcards(pytester.path / "cards")
    copy_audits(pytester.path, ("test_acquisition_traces.py",))
    result = pytester.runpytest(
        *FAST,
        "--metatrace-acquisition-data=cards/cards.csv",
        "--metatrace-min-per-class=5",
        "--metatrace-mask-ratio=0.5",
        "--metatrace-json=out.json",
        "--metatrace-threshold=probe.*=1.0",
        "--metatrace-threshold=agreement.*=1.0",
        "--metatrace-probe-mode=lbfgs",
        "audits",
        "-k",
        "agreement or sweep",
    )
    result.assert_outcomes(passed=2, skipped=7)
    # 24 photos x 6 views (unmasked = ratio 0, and 0.5 ... 1.0); no labelled set embedded
    result.stdout.fnmatch_lines(["*metatrace: embeddings computed 144, reused from cache 0*"])
    doc = json.loads((pytester.path / "out.json").read_text())
    assert [d["id"] for d in doc["datasets"]] == ["cards"]
    recs = {r["audit"]: r for r in doc["records"]}
    sweep = recs["mask_sweep"]
    assert sweep["metric"] == "semantic_recall_at_1_at_mask" and sweep["chance"] == 1 / 12
    semantic = sweep["details"]["semantic"]
    assert (semantic["source"], semantic["candidates"], semantic["dataset"]) == (
        "pairs",
        12,
        "cards",
    )
    assert semantic["scores"][0] == 1.0  # unmasked: every photo finds its twin
    assert semantic["scores"][-1] == pytest.approx(1 / 12)  # all black: chance exactly
    assert (
        "cards holds 12 group(s) of exactly one 'camera' and one 'smartphone'" in semantic["note"]
    )
    agree = recs["neighbour_agreement"]
    # the twin (other device, same postcard) is the one own-group neighbour, in every top-10
    assert agree["details"]["own_group_share"][0] == pytest.approx(0.1)
    assert agree["chance"] == pytest.approx(11 / 22)
    assert agree["details"]["chance_with_own_group"] == pytest.approx(11 / 23)
    html = (pytester.path / "reports" / "metatrace.html").read_text()
    assert "twin recall@1 over 12 pairs of cards" in html


def test_a_confounded_split_is_named_in_the_terminal(pytester: pytest.Pytester):
    """43 of the 48 training phones come from one owner: one line says so, with the share."""
    pytester.makeconftest(TINY_CONFTEST)
    root = pytester.path / "owners"
    root.mkdir()
    rows, k = ["path,label,group,smartphone"], 0
    for owner, (phones, cameras) in CONFOUNDED.items():
        for device in ["smartphone"] * phones + ["camera"] * cameras:
            Image.new("RGB", (8, 8), (k % 256, 9, 9)).save(root / f"p{k:03d}.png")
            rows.append(f"p{k:03d}.png,photo,{owner},{device}")
            k += 1
    (root / "owners.csv").write_text("\n".join(rows) + "\n")
    copy_audits(pytester.path, ("test_acquisition_traces.py",))
    result = pytester.runpytest(
        *FAST,
        "--metatrace-acquisition-data=owners/owners.csv",
        "--metatrace-min-per-class=5",
        "--metatrace-test-per-class=6",
        "--metatrace-seed=3",
        "audits",
        "-k",
        "test_acquisition_targets",
    )
    result.assert_outcomes(passed=1)
    lines = [ln for ln in result.stdout.lines if "confounded split" in ln]
    assert lines == [
        "metatrace: acquisition data owners: smartphone: confounded split: 43 of 48 training "
        "images of 'smartphone' (90%) come from group 'alice'; the probe may learn that group "
        "instead of the camera. Add photos from other groups"
    ]
