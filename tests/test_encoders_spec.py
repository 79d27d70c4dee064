"""Spec parsing, the registry, collection-time validation and its offline errors (no network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from encoder_helpers import (
    make_tiny_onnx_model,
    make_tiny_py_encoder_module,
    make_tiny_timm_weights,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_metatrace.encoders import (
    FAMILIES,
    EncoderRegistry,
    EncoderSpecError,
    default_registry,
    hub,
    list_encoders,
    parse_spec,
    register_encoder,
    session_registry,
    validate_spec,
)
from pytest_metatrace.encoders.spec import did_you_mean, parse_value

ROOT = Path(__file__).resolve().parents[1]


def offline(host: str) -> bool:
    return False


def online(host: str) -> bool:
    return True


# -- grammar --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "family", "target", "weights", "options"),
    [
        ("lite0", None, "lite0", None, ()),
        ("timm:resnet50.a1_in1k", "timm", "resnet50.a1_in1k", None, ()),
        ("timm:resnet50@a1_in1k", "timm", "resnet50", "a1_in1k", ()),
        (
            "timm:vit_small@/w/vit.safetensors?img_size=256",
            "timm",
            "vit_small",
            "/w/vit.safetensors",
            (("img_size", "256"),),
        ),
        ("OpenCLIP:ViT-B-16@openai", "open_clip", "ViT-B-16", "openai", ()),
        (
            "open_clip:hf-hub:timm/ViT-B-16-SigLIP",
            "open_clip",
            "hf-hub:timm/ViT-B-16-SigLIP",
            None,
            (),
        ),
        ("hf:facebook/dinov2-base@main", "hf", "facebook/dinov2-base", "main", ()),
        (
            "onnx:./m.onnx?std=0.5,0.5,0.5&output=embeds",
            "onnx",
            "./m.onnx",
            None,
            (("output", "embeds"), ("std", "0.5,0.5,0.5")),
        ),
        ("py:my_pkg.models:make?width=8", "py", "my_pkg.models:make", None, (("width", "8"),)),
        ("py:/src/enc.py:make@/w/net.pt", "py", "/src/enc.py:make", "/w/net.pt", ()),
        ("my_model?mean=0.5", None, "my_model", None, (("mean", "0.5"),)),
    ],
)
def test_parse_spec_splits_the_grammar(
    spec: str, family: str | None, target: str, weights: str | None, options: tuple
) -> None:
    p = parse_spec(spec)
    assert (p.family, p.target, p.weights, p.options) == (family, target, weights, options)


def test_normalized_and_short_id() -> None:
    p = parse_spec(" openclip:ViT-B-16@openai?interpolation=bilinear&crop_pct=0.9 ")
    assert p.normalized == "open_clip:ViT-B-16@openai?crop_pct=0.9&interpolation=bilinear"
    assert parse_spec(p.normalized) == parse_spec(p.normalized)
    assert parse_spec(p.normalized).normalized == p.normalized
    assert parse_spec("timm:resnet18@/long/path/to/w.pth").short_id == "timm:resnet18@w.pth"
    assert parse_spec("py:/src/pkg/enc.py:make").short_id == "py:enc.py:make"
    assert (
        parse_spec("onnx:/models/x/model.onnx?output=embeds").short_id
        == "onnx:model.onnx?output=embeds"
    )
    assert parse_spec("lite0").short_id == "lite0"


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    st.dictionaries(
        st.from_regex(r"[a-z][a-z_]{0,6}", fullmatch=True).filter(lambda k: k != "resize_policy"),
        st.text("abc0123.,-", min_size=1, max_size=8),
        max_size=3,
    ),
)
def test_normalized_spec_round_trips(name: str, options: dict[str, str]) -> None:
    from urllib.parse import quote

    query = "&".join(f"{k}={quote(v)}" for k, v in options.items())
    spec = f"timm:{name}@tag" + (f"?{query}" if query else "")
    p = parse_spec(spec)
    assert p.option_dict == options
    assert parse_spec(p.normalized).options == p.options


def test_parse_value_literals() -> None:
    assert parse_value("224") == 224
    assert parse_value("0.875") == 0.875
    assert parse_value("0.5,0.5,0.5") == (0.5, 0.5, 0.5)
    assert parse_value("224,256") == (224, 256)
    assert parse_value("true") is True
    assert parse_value("None") is None
    assert parse_value("embeds") == "embeds"


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("", ["empty encoder spec"]),
        (
            "tim:resnet50",
            ["unknown encoder family 'tim'", "did you mean 'timm'", "--metatrace-list-encoders"],
        ),
        ("timm:", ["nothing names the model"]),
        ("timm:resnet50@", ["empty weights after '@'"]),
        ("open_clip:ViT-B-16", ["names no weights", "open_clip:ViT-B-16@openai"]),
        ("py:my_module", ["expected py:<module or file.py>:<callable>"]),
        ("timm:resnet50?resize_policy=crop-size", ["--metatrace-resize-policy"]),
        ("timm:resnet50?a=1&a=2", ["given twice"]),
        ("/models/x.onnx", ["use family:target"]),
    ],
)
def test_parse_errors_name_the_fix(spec: str, fragments: list[str]) -> None:
    with pytest.raises(EncoderSpecError) as info:
        parse_spec(spec)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_did_you_mean_prefers_exact_then_contained_then_subsequence() -> None:
    names = [
        "timm:vit_base_patch16_224",
        "timm:vit_base_patch16_clip_224",
        "timm:resnet50",
        "lite0",
    ]
    assert did_you_mean("LITE0", names) == "; did you mean 'lite0'?"
    assert "'timm:resnet50'" in did_you_mean("resnet50", names)
    assert did_you_mean("vit_b16", names).startswith("; did you mean 'timm:vit_base_patch16_224'")
    assert did_you_mean("zzzz", names) == ""


# -- registry -------------------------------------------------------------------------------


def test_registry_register_names_get_describe() -> None:
    reg = EncoderRegistry(entry_points=False)
    assert reg.names() == ["lite0", "lite1", "lite2"]
    assert reg.get("lite0").alias == "builtin:lite0"

    def factory(**options: object) -> object:
        return options

    reg.register("my_vit", factory, description="in-house ViT")
    reg.register("my_alias", "timm:resnet18@a1_in1k")
    assert reg.names() == ["lite0", "lite1", "lite2", "my_alias", "my_vit"]
    assert reg.names("my_*") == ["my_alias", "my_vit"]
    assert reg.get("my_vit").factory is factory
    assert reg.describe()["my_vit"] == "in-house ViT"
    assert reg.describe()["my_alias"] == "= timm:resnet18@a1_in1k"
    reg.register("my_vit", factory)  # same factory again: a no-op
    with pytest.raises(EncoderSpecError, match=r"already registered.*override=True"):
        reg.register("my_vit", lambda: None)
    reg.register("my_vit", lambda: None, override=True)
    with pytest.raises(EncoderSpecError, match=r"bad encoder name"):
        reg.register("timm:x", factory)
    with pytest.raises(EncoderSpecError, match=r"register a callable"):
        reg.register("n", 3)  # type: ignore[arg-type]


def test_unknown_name_suggests_and_points_to_the_listing() -> None:
    reg = EncoderRegistry(entry_points=False)
    reg.register("my_vit_small", "timm:vit_small_patch16_224")
    with pytest.raises(EncoderSpecError) as info:
        reg.get("my_vit_smal")
    msg = str(info.value)
    assert "unknown encoder 'my_vit_smal'; did you mean 'my_vit_small'?" in msg
    assert "`pytest --metatrace-list-encoders` lists them" in msg


def test_register_encoder_decorator_and_session_copies() -> None:
    @register_encoder("metatrace_test_decorated", description="from a decorator")
    def make(**options: object) -> object:
        return options

    try:
        assert "metatrace_test_decorated" in list_encoders("metatrace_test_*")
        session = session_registry()
        session.register("only_in_session", make)
        assert "only_in_session" not in default_registry
        assert session.get("metatrace_test_decorated").factory is make
    finally:
        default_registry.unregister("metatrace_test_decorated")


def test_entry_points_are_listed_lazily_and_loaded_on_get(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from importlib import metadata

    module = tmp_path / "ep_encoders_mod.py"
    module.write_text("LOADED = []\ndef make(**kw):\n    LOADED.append(kw)\n    return 'lite0'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        metadata.EntryPoint("ep_model", "ep_encoders_mod:make", "pytest_metatrace.encoders"),
        metadata.EntryPoint("ep_broken", "no_such_module_xyz:make", "pytest_metatrace.encoders"),
    ]
    monkeypatch.setattr(
        metadata,
        "entry_points",
        lambda group=None: eps if group == "pytest_metatrace.encoders" else [],
    )
    reg = EncoderRegistry()
    assert reg.names() == ["ep_broken", "ep_model", "lite0", "lite1", "lite2"]
    assert "ep_encoders_mod" not in sys.modules  # listing imports nothing
    entry = reg.get("ep_model")
    assert callable(entry.factory)
    assert entry.source.startswith("entry point")
    with pytest.raises(EncoderSpecError, match=r"failed to load 'no_such_module_xyz:make'"):
        reg.get("ep_broken")


# -- validate_spec ----------------------------------------------------------------------------


def test_validate_checks_files_without_importing_libraries(tmp_path: Path) -> None:
    with pytest.raises(EncoderSpecError, match=r"timm weights file not found: .*missing.pth"):
        validate_spec(f"timm:resnet18@{tmp_path}/missing.pth", check_available=False)
    with pytest.raises(EncoderSpecError, match=r"ONNX model file not found"):
        validate_spec(f"onnx:{tmp_path}/none.onnx", check_available=False)
    with pytest.raises(EncoderSpecError, match=r"hf model directory not found"):
        validate_spec(f"hf:{tmp_path}/nodir", check_available=False)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(EncoderSpecError, match=r"has no config.json; save the model with"):
        validate_spec(f"hf:{tmp_path}/emptydir", check_available=False)
    with pytest.raises(EncoderSpecError, match=r"interpolation must be one of"):
        validate_spec("lite0?interpolation=cubic", check_available=False)
    assert validate_spec("lite0", check_available=False).target == "lite0"


def test_validate_unknown_bare_name_suggests_timm_models() -> None:
    with pytest.raises(EncoderSpecError) as info:
        validate_spec("vit_b16", registry=EncoderRegistry(entry_points=False), probe=offline)
    msg = str(info.value)
    assert "unknown encoder 'vit_b16'; did you mean 'timm:vit_base_patch16_224'" in msg
    assert "`pytest --metatrace-list-encoders` lists them" in msg


def test_validate_follows_aliases_to_their_target(tmp_path: Path) -> None:
    reg = EncoderRegistry(entry_points=False)
    reg.register("broken_alias", f"onnx:{tmp_path}/nowhere.onnx")
    with pytest.raises(EncoderSpecError, match=r"nowhere.onnx"):
        validate_spec("broken_alias", registry=reg, probe=offline)
    reg.register("loop_a", "loop_b")
    reg.register("loop_b", "loop_a")
    with pytest.raises(EncoderSpecError, match=r"nest too deep"):
        validate_spec("loop_a", registry=reg, probe=offline)


def test_hub_weights_offline_and_uncached_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf_cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    asked: list[str] = []

    def probe(host: str) -> bool:
        asked.append(host)
        return False

    with pytest.raises(EncoderSpecError) as info:
        validate_spec("timm:resnet18.a1_in1k", probe=probe)
    msg = str(info.value)
    assert asked == ["huggingface.co"]
    assert "not in the local cache" in msg
    assert "huggingface.co cannot be reached" in msg
    assert "timm.create_model('resnet18.a1_in1k', pretrained=True)" in msg
    assert "timm:resnet18@/path/to/weights.safetensors" in msg
    with pytest.raises(EncoderSpecError, match=r"hf download facebook/dinov2-base"):
        validate_spec("hf:facebook/dinov2-base", probe=probe)
    with pytest.raises(
        EncoderSpecError, match=r"open_clip.create_model\('ViT-B-32', pretrained='openai'\)"
    ):
        validate_spec("open_clip:ViT-B-32@openai", probe=probe)
    # Reachable hub: the download will happen at load, so validation passes.
    assert validate_spec("timm:resnet18.a1_in1k", probe=online).family == "timm"


def test_hub_weights_found_in_the_local_cache_need_no_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hf"
    snap = cache / "models--timm--resnet18.a1_in1k" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "model.safetensors").write_bytes(b"x")
    (cache / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (cache / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("0" * 40)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    def must_not_probe(host: str) -> bool:
        raise AssertionError("the probe ran although the weights are cached")

    assert validate_spec("timm:resnet18.a1_in1k", probe=must_not_probe).target == "resnet18.a1_in1k"


def test_hf_hub_offline_env_means_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_offline()
    assert not hub.hub_reachable("huggingface.co")
    previous = hub.set_hub_probe(offline)
    try:
        assert hub.get_hub_probe() is offline
    finally:
        hub.set_hub_probe(previous)


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        (
            "timm:resnet18.not_a_tag",
            ["no pretrained weights 'resnet18.not_a_tag'", "resnet18.a1_in1k"],
        ),
        ("timm:resnet_50", ["unknown timm model 'resnet_50'", "did you mean 'timm:"]),
        ("timm:resnet18?num_classes=3", ["cannot set ['num_classes']"]),
        ("open_clip:ViT-B-16@not_a_tag", ["no pretrained tag 'not_a_tag'", "openai"]),
        (
            "open_clip:ViT-B-61@openai",
            ["unknown open_clip architecture 'ViT-B-61'", "did you mean"],
        ),
        (
            "builtin:lite3",
            ["unknown built-in encoder 'lite3'; did you mean", "built-ins: ['lite0', 'lite1'"],
        ),
        ("hf:not-a-hub-id", ["hub id 'org/name'"]),
        ("hf:org/name?pooling=mean", ["take no option(s) ['pooling']"]),
    ],
)
def test_library_checks_name_the_fix(spec: str, fragments: list[str]) -> None:
    with pytest.raises(EncoderSpecError) as info:
        validate_spec(spec, probe=offline)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_local_specs_validate_offline(tmp_path: Path) -> None:
    for spec in (
        make_tiny_timm_weights(tmp_path),
        make_tiny_onnx_model(tmp_path),
        make_tiny_py_encoder_module(tmp_path),
    ):
        assert validate_spec(spec, probe=offline).raw == spec
    assert validate_spec("lite0", probe=offline).family is None


def test_bad_py_targets(tmp_path: Path) -> None:
    spec = make_tiny_py_encoder_module(tmp_path)
    with pytest.raises(
        EncoderSpecError, match=r"has no 'make_encodr'; did you mean 'make_encoder'"
    ):
        validate_spec(spec.replace("make_encoder", "make_encodr"), probe=offline)
    with pytest.raises(
        EncoderSpecError, match=r"cannot import module 'no_such_pkg_xyz.models'.*pythonpath"
    ):
        validate_spec("py:no_such_pkg_xyz.models:make", probe=offline)
    bad = tmp_path / "broken_mod.py"
    bad.write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(
        EncoderSpecError, match=r"importing .*broken_mod.py failed: RuntimeError: boom at import"
    ):
        validate_spec(f"py:{bad}:make", probe=offline)
    with pytest.raises(EncoderSpecError, match=r"py: module file not found"):
        validate_spec(f"py:{tmp_path}/absent.py:make", check_available=False)


# -- loading the package costs nothing ----------------------------------------------------------


def test_importing_the_encoders_package_imports_no_heavy_library() -> None:
    code = (
        "import sys; import pytest_metatrace.encoders as e; "
        "from pytest_metatrace.encoders import parse_spec, validate_spec, default_registry; "
        "parse_spec('timm:resnet18@a1_in1k'); validate_spec('lite0', check_available=False); "
        "default_registry.describe(); "
        "heavy = [m for m in ('torch', 'timm', 'open_clip', 'transformers', 'onnxruntime', "
        "'numpy') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_families_listing_is_complete() -> None:
    assert set(FAMILIES) == {"timm", "open_clip", "hf", "onnx", "py", "builtin"}
