"""CPU contention and OpenMP's wait policy (issue 18, item 7): results in bench/README.md.

The plugin sets ``OMP_WAIT_POLICY=PASSIVE`` at load unless the user set it
(``pytest_metatrace/_omp.py``). This bench measures why, in one run: the same
warm CPU workload, each time in a fresh Python process (OpenMP reads the
variable once, when torch loads), in four conditions:

- quiet or under a competing CPU job (one busy-loop process per core, started
  before the workload and stopped after it);
- ``OMP_WAIT_POLICY`` unset (OpenMP's default: waiting threads spin for a while)
  or ``PASSIVE`` (they sleep at once).

Workloads (``--workload``):

``probe`` (default)
    the processing probe of an audit on synthetic embeddings shaped like the
    demo set's (``run_processing_probe``: 30-trial search, every seed's fit,
    scoring), timed inside the process after the imports;
``audit``
    a warm ``pytest audits/test_processing_traces.py`` (README command 1's probe
    audit, every embedding cached: load, read, probes, report), timed as a whole.

It prints the median seconds of each condition over ``--repeats`` alternating
runs and the ratios: contended / quiet per policy (how much a busy machine
slows a run down) and PASSIVE / unset per condition (what the policy costs or
saves), with the load average before and after. ``--readme`` writes that table
into bench/README.md between the ``bench_contention`` markers.

    python bench/bench_contention.py --readme          # 9 minutes on the loaded 2-core dev machine
    python bench/bench_contention.py --workload audit --cache-dir /tmp/x-cache
    python bench/bench_contention.py --quick           # a smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "bench" / "README.md"
START, END = "<!-- bench_contention:start -->", "<!-- bench_contention:end -->"

PROBE_CODE = """
import json, os, sys, time
import numpy as np
import torch
from pytest_metatrace.analysis.probe import LinearProbe
from pytest_metatrace.audits.processing_probe.analysis import run_processing_probe

n_train, n_test, dim, n_classes, seeds, trials = (int(a) for a in sys.argv[1:7])
rng = np.random.default_rng(0)
scales = 1.0 / np.sqrt(1.0 + np.arange(dim) / 16.0)
semantic = (rng.normal(size=(n_train + n_test, dim)) * scales).astype(np.float32)
offsets = (rng.normal(size=(n_classes, dim)) * scales * 0.08).astype(np.float32)
names = [f"class{k}" for k in range(n_classes)]
train = {c: semantic[:n_train] + offsets[k] for k, c in enumerate(names)}
test = {c: semantic[n_train:] + offsets[k] for k, c in enumerate(names)}
probe = LinearProbe(n_trials=trials, device="cpu")
start = time.perf_counter()
result = run_processing_probe(train, test, names, probe=probe, seeds=seeds)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads(),
                  "policy": os.environ.get("OMP_WAIT_POLICY"),
                  "top1": float(result.top1_mean)}))
"""


def _busy() -> None:
    while True:
        pass


def _probe_sizes(quick: bool) -> list[str]:
    # a small processing probe (4 classes, 100 training images per class, 2 seeds, 8
    # trials): the demo set's probes are 150 per class, 1280-d, 10 seeds, 30 trials, too
    # long for four conditions x repeats on a loaded 2-core machine
    n_train, n_test, dim, classes, seeds, trials = (
        (50, 50, 64, 4, 1, 4) if quick else (100, 100, 256, 4, 2, 8)
    )
    return [str(v) for v in (n_train, n_test, dim, classes, seeds, trials)]


def run_once(args: argparse.Namespace, passive: bool) -> dict[str, object]:
    """One workload run in a fresh process; ``passive`` sets the policy, else it is unset."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if args.workload == "probe":
        cmd = [sys.executable, "-c", PROBE_CODE, *_probe_sizes(args.quick)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        row: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
        expected = "PASSIVE" if passive else None
        if row["policy"] != expected:
            raise SystemExit(f"policy leaked into the workload: {row['policy']!r}")
        return row
    pytest_args = [
        str(REPO / "audits" / "test_processing_traces.py"),
        "-q", "-p", "no:cacheprovider", "--metatrace-report=none",
        f"--metatrace-cache-dir={args.cache_dir}",
    ]  # fmt: skip
    # Unset: torch (and with it OpenMP) loads before the plugin sets PASSIVE, so the
    # run keeps OpenMP's default; the plugin's value then reaches no OpenMP runtime
    # (CPU runs decode in the main process: no worker processes start later).
    code = f"import sys, torch, pytest; sys.exit(pytest.main({pytest_args!r}))"
    cmd = [sys.executable, "-c", code]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return {"seconds": time.perf_counter() - start, "policy": env.get("OMP_WAIT_POLICY")}


def measure(args: argparse.Namespace, contended: bool, passive: bool) -> dict[str, object]:
    """One condition: the workload with (or without) a busy loop on every core."""
    workers: list[mp.Process] = []
    if contended:
        count = args.busy or os.cpu_count() or 1
        workers = [mp.Process(target=_busy, daemon=True) for _ in range(count)]
        for w in workers:
            w.start()
        time.sleep(0.5)
    try:
        return run_once(args, passive)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.join()


def main() -> None:
    """Measure the four conditions, print the table; with ``--readme`` write it there."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=("probe", "audit"), default="probe")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs; median kept")
    parser.add_argument("--cache-dir", default="/tmp/bench-contention-cache", help="(audit)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--readme", action="store_true", help="write the table into README")
    parser.add_argument(
        "--busy", type=int, default=0, help="competing busy-loop processes (default: one per core)"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    if args.workload == "audit":  # warm the cache once, outside the timings
        run_once(args, passive=True)
    conditions = [(c, p) for c in (False, True) for p in (False, True)]
    times: dict[tuple[bool, bool], list[float]] = {k: [] for k in conditions}
    load_before = os.getloadavg()
    threads = None
    for r in range(args.repeats):
        for contended, passive in conditions if r % 2 == 0 else conditions[::-1]:
            row = measure(args, contended, passive)
            threads = row.get("threads", threads)
            times[(contended, passive)].append(float(row["seconds"]))  # type: ignore[arg-type]
            print(f"contended={contended} passive={passive}: {row['seconds']:.2f} s", flush=True)
    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    table = render(args, med, times, load_before, load_after, threads)
    print(table)
    if args.readme:
        text = README.read_text()
        start, end = START, END
        if args.busy and args.busy != os.cpu_count():  # its own table beside the default one
            start, end = (m.replace("bench_contention", f"bench_contention_busy{args.busy}")
                          for m in (START, END))  # fmt: skip
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = head + start + "\n" + table + end + rest.split(end, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + start + "\n" + table + end + "\n"
        README.write_text(text)


def render(
    args: argparse.Namespace,
    med: dict[tuple[bool, bool], float],
    times: dict[tuple[bool, bool], list[float]],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    threads: object,
) -> str:
    """The Markdown table of one run: medians, ratios, machine and load average."""

    def cell(k: tuple[bool, bool]) -> str:
        runs = ", ".join(f"{t:.2f}" for t in times[k])
        return f"{med[k]:.2f} s ({runs})"

    lines = [
        f"Workload `{args.workload}`"
        + (f" ({' '.join(_probe_sizes(args.quick))}: n_train n_test dim classes seeds trials)"
           if args.workload == "probe" else "")
        + f", {args.repeats} alternating runs per condition (median, runs), "
        f"{os.cpu_count()} cores, torch threads {threads}, {platform.machine()}; "
        f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/"
        f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}.",
        "",
        "| | OMP_WAIT_POLICY unset | PASSIVE | PASSIVE / unset |",
        "|---|---|---|---|",
    ]  # fmt: skip
    busy = args.busy or os.cpu_count() or 1
    busy_label = "busy loop on every core" if busy == os.cpu_count() else f"{busy} busy loop(s)"
    for contended, label in ((False, "quiet"), (True, busy_label)):
        ratio = med[(contended, True)] / med[(contended, False)]
        lines.append(
            f"| {label} | {cell((contended, False))} | {cell((contended, True))} | {ratio:.2f} |"
        )
    slow_unset = med[(True, False)] / med[(False, False)]
    slow_passive = med[(True, True)] / med[(False, True)]
    lines.append(f"| **busy / quiet** | **{slow_unset:.2f}** | **{slow_passive:.2f}** | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
