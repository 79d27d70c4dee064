"""The plugin as users run it: options, collection errors, audits end to end, xdist, gates."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from plugin_helpers import FAST, TINY_CONFTEST, copy_audits, make_tiny_dataset, preimport

# pytester runs in-process; see plugin_helpers.preimport.
preimport()

HEAVY = (
    "torch",
    "timm",
    "open_clip",
    "transformers",
    "onnxruntime",
    "numpy",
    "PIL",
    "sklearn",
    "ray",
    "pyarrow",
    "fsspec",
)


def test_loading_the_plugin_imports_nothing_heavy():
    code = (
        "import sys, pytest_metatrace.plugin, pytest_metatrace;"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_option_and_stays_light(pytester: pytest.Pytester):
    pytester.makeconftest(
        f"""
        import sys
        def pytest_unconfigure(config):
            open("modules.txt", "w").write(
                " ".join(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == 0
    out = result.stdout.str()
    from pytest_metatrace.settings import core_options
    from pytest_metatrace.spec import default_registry

    for opt in (*core_options(), *default_registry().options()):
        if opt.env_only:
            assert f"{opt.env} (" in out, opt.env
            assert opt.cli not in out, opt.cli
            continue
        assert opt.cli in out, opt.cli
        if not opt.flag:
            assert opt.ini in out, opt.ini
    assert (pytester.path / "modules.txt").read_text() == ""


def test_option_resolution_cli_over_ini_over_default(pytester: pytest.Pytester):
    pytester.makeini(
        """
        [pytest]
        metatrace_batch_size = 7
        metatrace_encoder =
            tiny
            other
        """
    )
    pytester.makepyfile(
        """
        def test_opts(metatrace_settings, pytestconfig):
            import json
            assert metatrace_settings.batch_size == metatrace_settings["batch-size"]
            open("opts.json", "w").write(json.dumps(metatrace_settings.to_dict()))
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    opts = json.loads((pytester.path / "opts.json").read_text())
    assert opts["batch-size"] == 7
    assert opts["encoder"] == ["tiny", "other"]
    assert opts["seed"] == 0 and opts["mask-ratio"] == 0.9  # defaults
    pytester.runpytest("-p", "no:cacheprovider", "--metatrace-batch-size=3").assert_outcomes(
        passed=1
    )
    assert json.loads((pytester.path / "opts.json").read_text())["batch-size"] == 3


def test_bad_option_value_names_the_option(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\nmetatrace_test_fraction = 1.5\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*metatrace_test_fraction*1.5*strictly between 0 and 1*"])


def test_list_encoders_shows_conftest_registrations(pytester: pytest.Pytester):
    pytester.makeconftest(TINY_CONFTEST)
    result = pytester.runpytest_subprocess("--metatrace-list-encoders")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*lite0*EfficientNet-Lite0*", "*tiny*tiny random conv net*", "*timm:<model>*"]
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("tiyn", "*did you mean 'tiny'*--metatrace-list-encoders*"),
        ("timm:resnet18@/no/such/weights.pth", "*weights.pth*"),
        ("nosuchfamily:thing", "*nosuchfamily*"),
    ],
)
def test_bad_encoder_spec_fails_at_collection(pytester: pytest.Pytester, spec, expected):
    pytester.makeconftest(TINY_CONFTEST)
    pytester.makepyfile("def test_a(metatrace_encoder):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--metatrace-encoder={spec}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --metatrace-encoder={spec}{expected}"])


def test_hub_weights_while_offline_fail_at_collection_with_the_fix(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(pytester.path / "hf-home"))
    pytester.makepyfile("def test_a(metatrace_encoder):\n    pass\n")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--metatrace-encoder=timm:resnet18.a1_in1k"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert "resnet18" in text and "@" in text  # points at the local-file form


def test_unknown_dataset_fails_at_collection(pytester: pytest.Pytester):
    pytester.makepyfile("def test_a(metatrace_dataset):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-data=dmeo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--metatrace-data=dmeo*Did you mean 'demo'*"])


def test_a_project_not_using_the_plugin_gets_no_report(pytester: pytest.Pytester):
    pytester.makepyfile("def test_a():\n    pass\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    assert not (pytester.path / ".metatrace_cache").exists()


@pytest.fixture
def tiny_project(pytester: pytest.Pytester):
    pytester.makeconftest(TINY_CONFTEST)
    make_tiny_dataset(pytester.path / "tinyset")
    return pytester


def _records(path):
    doc = json.loads(path.read_text())
    return doc, {(r["audit"], r["parameter"], r["metric"]): r for r in doc["records"]}


def test_drift_audit_end_to_end_then_warm_rerun_computes_nothing(tiny_project):
    pytester = tiny_project
    copy_audits(pytester.path, ("test_processing_drift.py",))
    args = (*FAST, "--metatrace-data=tinyset", "--metatrace-json=out.json", "audits")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=13)
    result.stdout.fnmatch_lines(
        ["*metatrace: 13 records*", "*embeddings computed 336*", "*report written to*"]
    )
    doc, recs = _records(pytester.path / "out.json")
    assert doc["run"]["embeddings"]["computed"] == 24 * 14
    rec = recs[("processing_drift", "jpeg75_420", "mean_cosine_distance")]
    assert rec["encoder"] == "tiny" and rec["dataset"] == "tinyset"
    assert rec["value"] > 0 and rec["interval"]["low"] <= rec["value"] <= rec["interval"]["high"]
    prov = rec["provenance"]
    assert prov["nodeid"].endswith("test_processing_drift[tiny-tinyset-jpeg75_420]")
    assert prov["encoder_fingerprint"] == doc["encoders"][0]["fingerprint"]
    assert prov["dataset_fingerprint"] == doc["datasets"][0]["fingerprint"]
    assert prov["versions"]["torch"]
    assert doc["datasets"][0]["n_images"] == 24
    assert doc["datasets"][0]["split"]["n_test"] == 12
    assert doc["encoders"][0]["preprocess"]["input_size"] == [48, 48]
    assert any(c["topic"] == "Interpolation scale" for c in doc["choices"])
    html = (pytester.path / "reports" / "metatrace.html").read_text()
    assert "processing_drift" in html or "Processing drift" in html

    again = pytester.runpytest(*args)
    again.assert_outcomes(passed=13)
    again.stdout.fnmatch_lines(["*embeddings computed 0, reused from cache 336*"])
    doc2, recs2 = _records(pytester.path / "out.json")
    assert doc2["run"]["embeddings"]["computed"] == 0
    for key, rec in recs.items():
        assert recs2[key]["value"] == rec["value"]


def test_xdist_two_workers_give_identical_numbers(tiny_project):
    pytest.importorskip("xdist")
    pytester = tiny_project
    copy_audits(pytester.path, ("test_processing_drift.py", "test_semantic_influence.py"))
    # the tiny detector's kNN gaps are huge by design; this test is about numbers, not gates
    base = (*FAST, "--metatrace-data=tinyset", "--metatrace-threshold", "knn.*=1.0", "audits")
    single = pytester.runpytest_subprocess(
        *base, "--metatrace-json=single.json", "--metatrace-cache-dir=cache1"
    )
    single.assert_outcomes(passed=17)
    double = pytester.runpytest_subprocess(
        *base, "-n", "2", "--metatrace-json=double.json", "--metatrace-cache-dir=cache2"
    )
    double.assert_outcomes(passed=17)
    _, recs1 = _records(pytester.path / "single.json")
    doc2, recs2 = _records(pytester.path / "double.json")
    assert recs1.keys() == recs2.keys()
    for key, rec in recs1.items():
        assert recs2[key]["value"] == rec["value"], key
        assert recs2[key]["interval"] == rec["interval"], key
    # every embedding computed exactly once across the two workers
    assert doc2["run"]["embeddings"]["computed"] == 24 * 14
    workers = {r["provenance"]["worker"] for r in doc2["records"]}
    assert workers <= {"gw0", "gw1"} and len(doc2["encoders"]) == 1


def test_gate_failure_message_and_threshold_sources(tiny_project):
    pytester = tiny_project
    copy_audits(pytester.path, ("test_processing_drift.py",))
    # tiny's drift is about 0.005 of the (0, 2) range of cosine distances: a valid
    # interval puts its lower end above 0 with about 100 images, not with 24
    make_tiny_dataset(pytester.path / "tiny96", per_class=32)
    pytester.makeini("[pytest]\nmetatrace_threshold =\n    drift.* = 0.0\n")
    base = (*FAST, "--metatrace-data=tiny96", "audits", "-k", "jpeg75_420 or sharpen4")
    result = pytester.runpytest(*base)
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "drift.jpeg75_420: the jpeg75_420 drift of tiny on tiny96 is significantly above" in out
    assert "95% CI" in out and "threshold 0" in out
    assert "ini line `drift.* = 0.0`" in out
    assert "--metatrace-threshold drift.jpeg75_420=VALUE" in out
    assert "Traceback" not in out  # a gate failure is a message, not a stack trace
    result.stdout.fnmatch_lines(
        [
            "*2 gate(s) failed*",
            # the summary names the statistic the gate compared, the interval's lower end
            "*FAILED drift.jpeg75_420*mean_cosine_distance * (interval low *) > threshold 0",
        ]
    )

    # the command line beats the ini file
    cli = pytester.runpytest(*base, "--metatrace-threshold", "drift.*=1.0")
    cli.assert_outcomes(passed=2)


def test_marker_threshold_beats_ini(tiny_project):
    pytester = tiny_project
    pytester.makeini("[pytest]\nmetatrace_threshold =\n    drift.* = 0.0\n")
    pytester.makepyfile(
        test_custom="""
        import numpy as np
        import pytest
        from pytest_metatrace import Record, bootstrap_mean

        @pytest.mark.metatrace_threshold({"drift.custom": 1.0})
        def test_custom(metatrace_encoder, metatrace_dataset, metatrace_embeddings,
                        metatrace_record):
            a = metatrace_embeddings(metatrace_dataset, "all", "jpeg95_444")
            b = metatrace_embeddings(metatrace_dataset, "all", "jpeg75_420")
            d = np.abs(a - b).mean(axis=1)
            rec = Record(audit="my_audit", metric="l1", value=float(d.mean()),
                         encoder=metatrace_encoder.id, dataset=metatrace_dataset.id,
                         unit="l1", interval=bootstrap_mean(d).to_dict())
            gate = metatrace_record.gate(rec, "drift.custom", what="custom drift")
            assert gate.source == "marker" and gate.passed
            metatrace_record.assert_gates()
        """
    )
    result = pytester.runpytest(*FAST, "--metatrace-data=tinyset", "--metatrace-json=o.json")
    result.assert_outcomes(passed=1)
    _, recs = _records(pytester.path / "o.json")
    assert recs[("my_audit", None, "l1")]["gate"]["source"] == "marker"


def test_processing_probe_audit_records_passes_and_fails(tiny_project):
    pytester = tiny_project
    copy_audits(pytester.path, ("test_processing_traces.py",))
    # the probe's 20% stratified validation split needs one image per class on
    # each side, and a random draw of 6 classes must leave every class two of them
    make_tiny_dataset(pytester.path / "tiny120", per_class=40)
    base = (*FAST, "--metatrace-data=tiny120", "--metatrace-json=p.json", "audits")
    passing = pytester.runpytest(*base, "--metatrace-threshold", "probe.*=1.0")
    passing.assert_outcomes(passed=4)
    _, recs = _records(pytester.path / "p.json")
    jpeg = recs[("processing_probe", "jpeg", "top1")]
    details = jpeg["details"]
    assert jpeg["chance"] == pytest.approx(1 / 6)
    assert details["seeds"] == [0, 1]  # --metatrace-probe-seeds=2
    assert details["n_test_samples"] == 6 * details["n_test_images"] == 6 * 60
    assert len(details["confusion"]) == 6 and sum(map(sum, details["confusion"])) == 2 * 360
    assert len(details["search"]) == 4  # --metatrace-probe-trials=4
    assert jpeg["interval"]["low"] <= jpeg["value"] <= jpeg["interval"]["high"]
    assert jpeg["gate"]["passed"] and jpeg["gate"]["source"] == "command line"
    # the tiny net sees JPEG on noisy images: at chance level the gate must fail
    failing = pytester.runpytest(*base, "-k", "jpeg", "--metatrace-threshold", "probe.*=chance+0")
    failing.assert_outcomes(failed=1)
    out = failing.stdout.str()
    assert "probe.jpeg: the JPEG compression trace of tiny on tiny120 is significantly above" in out
    assert "chance 16.7%" in out and "threshold 16.7% (= chance+0)" in out


def test_a_dataset_too_small_for_the_probe_fails_with_the_reason(tiny_project):
    pytester = tiny_project
    copy_audits(pytester.path, ("test_processing_traces.py",))
    result = pytester.runpytest(*FAST, "--metatrace-data=tinyset", "audits", "-k", "jpeg")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "cannot run the JPEG compression probe on tinyset" in out
    assert "add samples" in out
    assert "Traceback" not in out and "processing_probe.py" not in out


def test_bad_device_is_a_usage_error_at_start(pytester: pytest.Pytester):
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-device=gpu0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--metatrace-device = 'gpu0': use auto, cpu, cuda, cuda:N*"])


def test_unique_ids_number_clashes_in_order():
    from pytest_metatrace.ids import unique_ids

    ids = unique_ids(["a/x", "b/x", "c/y", "a/x", "d/x"], lambda s: s.split("/")[1])
    assert ids == {"a/x": "x", "b/x": "x#2", "c/y": "y", "d/x": "x#3"}


def test_two_checkpoints_with_the_same_file_name_stay_apart(tiny_project):
    pytester = tiny_project
    copy_audits(pytester.path, ("test_processing_drift.py",))
    module = TINY_CONFTEST.replace("def pytest_metatrace_register_encoders", "def _unused")
    specs = []
    for name, scale in (("a", "1.0"), ("b", "3.0")):
        folder = pytester.path / name
        folder.mkdir()
        # the second "checkpoint" scales the colour features: other numbers
        (folder / "enc.py").write_text(
            module.replace("x.mean(dim=(2, 3))], 1)", f"{scale} * x.mean(dim=(2, 3))], 1)")
        )
        specs.append(f"--metatrace-encoder=py:{folder / 'enc.py'}:make_tiny")
    result = pytester.runpytest(
        *FAST[1:],
        *specs,
        "--metatrace-data=tinyset",
        "--metatrace-json=o.json",
        "audits",
        "-k",
        "jpeg75_420",
    )
    result.assert_outcomes(passed=2)
    doc = json.loads((pytester.path / "o.json").read_text())
    assert sorted(e["id"] for e in doc["encoders"]) == [
        "py:enc.py:make_tiny",
        "py:enc.py:make_tiny#2",
    ]
    by_encoder = {r["encoder"]: r for r in doc["records"]}
    assert set(by_encoder) == {"py:enc.py:make_tiny", "py:enc.py:make_tiny#2"}
    values = {r["value"] for r in by_encoder.values()}
    fingerprints = {r["provenance"]["encoder_fingerprint"] for r in by_encoder.values()}
    assert len(values) == 2 and len(fingerprints) == 2


def test_the_readme_audit_example_runs_as_written(tiny_project):
    import re

    from plugin_helpers import REPO

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Writing an audit", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    # The first block shows the built-in drift audit: its body is the shipped one's.
    shipped = (
        REPO / "pytest_metatrace" / "audits" / "processing_drift" / "test_processing_drift.py"
    ).read_text()
    body = blocks[0].split("):\n", 1)[1].strip().splitlines()
    assert len(body) == 4 and all(line in shipped for line in body)
    code = next(block for block in blocks if "my_audit" in block)
    pytester = tiny_project
    pytester.makepyfile(test_readme_example=code)
    result = pytester.runpytest(*FAST, "--metatrace-data=tinyset", "--metatrace-json=r.json")
    result.assert_outcomes(passed=1)
    doc = json.loads((pytester.path / "r.json").read_text())
    (record,) = doc["records"]
    assert record["audit"] == "my_audit" and record["value"] > 0
    assert record["gate"] is None  # no threshold configured for my_audit.jpeg75


def test_unreadable_images_are_skipped_named_and_reported(tiny_project):
    pytester = tiny_project
    copy_audits(pytester.path, ("test_processing_drift.py",))
    broken = pytester.path / "tinyset" / "class0" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature and nothing else
    result = pytester.runpytest(
        *FAST, "--metatrace-data=tinyset", "--metatrace-json=o.json", "audits", "-k", "sharpen2"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*dataset tinyset: skipped 1 image(s): *broken.png: *"])
    doc = json.loads((pytester.path / "o.json").read_text())
    (skipped,) = doc["datasets"][0]["skipped"]
    assert skipped["path"].endswith("broken.png") and skipped["reason"]
    assert doc["datasets"][0]["n_images"] == 24  # the 24 good ones, none silently dropped
    html = (pytester.path / "reports" / "metatrace.html").read_text()
    assert "broken.png" in html


def test_datasets_registered_by_a_conftest_hook(tiny_project):
    pytester = tiny_project
    pytester.makeconftest(
        TINY_CONFTEST
        + """

def pytest_metatrace_register_datasets(registry):
    from pathlib import Path
    from pytest_metatrace.data import load_dataset

    def mini(**context):
        root = Path(__file__).parent / "tinyset"
        ds = load_dataset(str(root), cache_dir=Path(__file__).parent / ".mini-cache")
        ds.name = "mini: the tiny set, registered by name"
        return ds

    registry.register("mini", mini, description="tiny set by name")
"""
    )
    pytester.makepyfile(
        """
        def test_mini(metatrace_dataset):
            assert metatrace_dataset.id == "mini"
            assert len(metatrace_dataset) == 24
        """
    )
    pytester.runpytest(*FAST, "--metatrace-data=mini").assert_outcomes(passed=1)


def test_cache_dir_from_the_environment_is_created_and_git_ignored(
    tiny_project, monkeypatch: pytest.MonkeyPatch
):
    pytester = tiny_project
    cache = pytester.path / "elsewhere" / "cache"
    monkeypatch.setenv("METATRACE_CACHE_DIR", str(cache))
    pytester.makepyfile("def test_a(metatrace_dataset):\n    assert len(metatrace_dataset) == 24\n")
    pytester.runpytest(*FAST, "--metatrace-data=tinyset").assert_outcomes(passed=1)
    assert (cache / "images.sqlite").exists()
    assert (cache / ".gitignore").read_text().splitlines()[-1] == "*"
    assert not (pytester.path / ".metatrace_cache").exists()


def test_a_malformed_manifest_fails_with_one_clear_message(pytester: pytest.Pytester):
    (pytester.path / "m.csv").write_text("file,label\na.png,x\n")
    pytester.makepyfile(
        "def test_a(metatrace_dataset):\n    pass\ndef test_b(metatrace_dataset):\n    pass\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--metatrace-data=m.csv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count("lacks column(s)") == 1
    where = f"--metatrace-data=m.csv (relative to {pytester.path})"
    assert f"{where}: manifest {pytester.path / 'm.csv'} lacks column(s) ['path']" in err
    assert "During handling" not in err and "Traceback" not in err


def test_the_readme_audit_spec_example_runs_as_written(tiny_project):
    """README "Your audit as a unit": the conftest spec and its audit module, verbatim."""
    import re

    from plugin_helpers import REPO

    readme = (REPO / "README.md").read_text()
    section = readme.split("### Your audit as a unit", 1)[1].split("\n### ", 1)[0]
    conftest, audit = re.findall(r"```python\n(.*?)```", section, re.S)
    assert "pytest_metatrace_register_audits" in conftest and "metatrace_audit" in audit
    pytester = tiny_project
    (pytester.path / "conftest.py").write_text(TINY_CONFTEST + "\n" + conftest)
    (pytester.path / "audits").mkdir()
    (pytester.path / "audits" / "test_jpeg_check.py").write_text(audit)
    helped = pytester.runpytest("-p", "no:cacheprovider", "--help")
    assert "--metatrace-jpeg-check-quality" in helped.stdout.str()
    assert "metatrace_jpeg_check_quality" in helped.stdout.str()
    typo = pytester.runpytest(*FAST, "audits", "--metatrace-threshold", "jpeg_check.distanse=0.1")
    assert typo.ret == pytest.ExitCode.USAGE_ERROR
    assert "Did you mean 'jpeg_check.distance'" in typo.stderr.str()
    result = pytester.runpytest(
        *FAST,
        "--metatrace-data=tinyset",
        "--metatrace-json=r.json",
        "--metatrace-report=r.html",
        "--metatrace-jpeg-check-quality=85",
        "audits",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 1, result.stdout.str()
    doc = json.loads((pytester.path / "r.json").read_text())
    (record,) = doc["records"]
    assert record["audit"] == "jpeg_check" and record["value"] > 0
    gate = record["gate"]
    assert (gate["key"], gate["source"], gate["spec"]) == ("jpeg_check.distance", "default", "0.05")
    assert "JPEG-85 drift" in gate["message"]
    assert doc["run"]["options"]["jpeg-check-quality"] == "85"
    html = (pytester.path / "r.html").read_text()
    assert 'id="sec-jpeg-check"' in html and ">JPEG check <small>" in html


def test_the_report_hook_sees_the_document_and_the_written_files(pytester: pytest.Pytester):
    pytester.makeconftest(
        """
        import json

        def pytest_metatrace_report(document, paths, config):
            with open("hook.json", "w") as f:
                json.dump({"records": len(document["records"]),
                           "paths": {k: str(v) for k, v in paths.items()}}, f)
        """
    )
    pytester.makepyfile(
        """
        from pytest_metatrace import Record

        def test_one(metatrace_record):
            metatrace_record(Record(audit="mine", metric="m", value=0.5, encoder="e", dataset="d"))
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--metatrace-json=out.json", "--metatrace-report=out.html"
    )
    result.assert_outcomes(passed=1)
    seen = json.loads((pytester.path / "hook.json").read_text())
    assert seen["records"] == 1
    assert seen["paths"] == {
        "html": str(pytester.path / "out.html"),
        "json": str(pytester.path / "out.json"),
    }
