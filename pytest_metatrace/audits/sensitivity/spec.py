"""The sensitivity audit's spec: what it gates, declares and renders (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_metatrace.options import option, positive_int
from pytest_metatrace.spec import AuditSpec, GateFamily, MetricSpec, SectionSpec

if TYPE_CHECKING:
    from pytest_metatrace.settings import Settings

#: The parameters searched, in report order (keys of ``search.GRIDS``).
PARAMETERS = ("jpeg", "sharpen", "resize")


def margin(text: str) -> float:
    """A margin over chance (0.5) for the paired score: 0 <= margin < 0.5."""
    value = float(text)
    if not 0.0 <= value < 0.5:
        raise ValueError("must lie in [0, 0.5)")
    return value


@dataclass(frozen=True)
class SensitivitySettings:
    """The sensitivity audit's options (``settings.of(SensitivitySettings)``)."""

    sensitivity: str = option(
        "named",
        "when the sensitivity audit runs: named (default: only when its test module is named "
        "on the command line, e.g. pytest audits/test_sensitivity.py; deselected otherwise) or "
        "always",
        choices=("named", "always"),
    )
    sensitivity_margin: float = option(
        0.05,
        "a step is detected when the lower end of its paired accuracy's gate interval exceeds "
        "chance (0.5) by this much",
        convert=margin,
        protocol=True,
    )
    sensitivity_search: str = option(
        "bisect",
        "how the smallest detected step is searched: bisect (default; assumes detection grows "
        "with the step) or hypothesis (hypothesis.find with shrinking and an example database "
        "under the cache dir; needs the hypothesis package)",
        choices=("bisect", "hypothesis"),
    )
    sensitivity_seeds: int = option(
        3,
        "training draws (probe seeds) per step the sensitivity search tries",
        convert=positive_int,
        metavar="N",
        protocol=True,
    )


def choices(settings: Settings) -> list[dict[str, str]]:
    """The sensitivity audit's protocol choices, for the report's provenance."""
    own = settings.of(SensitivitySettings)
    return [
        {
            "topic": "Sensitivity",
            "choice": "per step, a two-class processing probe (jpeg95_444 vs the step; "
            f"{own.sensitivity_seeds} seeds, a third of the probe's search trials) scored per "
            "test image as a paired choice (1 when the changed version's margin is larger); "
            "Clopper-Pearson interval; detected when its lower end exceeds "
            f"{0.5 + own.sensitivity_margin:g}; {own.sensitivity_search} search over a "
            "monotone grid (JPEG quality 94..50 4:4:4, sharpening 1.05..3, resize 0.95..0.5)",
            "reason": "issue 19: the smallest step an encoder notices; the paired 0/1 score makes "
            "the exact interval apply per test image, and bisection needs at most 7 probe fits "
            "per parameter where Hypothesis's find needed more (README 'Sensitivity')",
        }
    ]


SPEC = AuditSpec(
    name="sensitivity",
    title="Sensitivity",
    summary="the smallest JPEG-quality, sharpening and downscaling step from jpeg95_444 a "
    "two-class probe detects (paired accuracy's interval above 0.5 + margin); opt-in",
    order=90,
    tests=("test_sensitivity",),
    gates=(
        GateFamily(
            "sensitivity.*",
            "the smallest detected step, in the parameter's unit (quality points, factor)",
            0.0,
            100.0,
            reason="informational, like drift: how small a step an encoder notices is a "
            "property to watch across releases (a baseline), not one with a level that is "
            "wrong for every encoder; a threshold X fails an encoder that detects a step "
            "smaller than X (a smaller step is the stronger trace)",
            bounds=(0.0, 100.0),
            direction="below",
        ),
    ),
    gate_keys=tuple(f"sensitivity.{p}" for p in PARAMETERS),
    settings=SensitivitySettings,
    choices="pytest_metatrace.audits.sensitivity.spec:choices",
    results={"sensitivity": "pytest_metatrace.audits.sensitivity.analysis:SensitivityResult"},
    sections=(
        SectionSpec(
            "sensitivity",
            "Sensitivity",
            "section.html.j2",
            "pytest_metatrace.audits.sensitivity.section:sensitivity_context",
            order=90,
        ),
    ),
    metrics=(
        MetricSpec("sensitivity", "smallest_step", "lower", "smallest detected step", "none"),
    ),
    fixtures="pytest_metatrace.audits.sensitivity.selection",
)
