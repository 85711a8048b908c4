"""`make fuzz`: every fuzz target of `fuzz_targets.py` with a fixed budget of cases, each in its own process (its
peak memory is that process's), and the table of experiments/results/security.md.

    python experiments/fuzz.py                      100,000 cases per target, one target at a time
    python experiments/fuzz.py --cases 2000 --jobs 3 --out /tmp/security.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "security.md"
DEFAULT_CASES = 100_000
#: the report's hand-written part (what earlier runs found, and the fixes), kept when the tables are written again
KEPT = "## What the fuzzing found and fixed"


def run_one(target: str, cases: int, out: Path) -> None:
    """Fuzz one target in this process and write its result as JSON: cases, crashes, seconds, peak memory."""
    sys.path.insert(0, str(HERE))
    import fuzz_targets

    limit = fuzz_targets.TARGETS[target].address_space
    if limit:  # a case that asks for gigabytes then fails with MemoryError, a crash counted, not a killed process
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start = time.time()
    result = fuzz_targets.fuzz(target, cases, progress=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    out.write_text(json.dumps({
        "target": target, "about": fuzz_targets.TARGETS[target].about, "cases": result.cases,
        "crashes": dict(result.crashes), "examples": {k: repr(v)[:300] for k, v in result.examples.items()},
        "seconds": round(time.time() - start, 1), "setup_mib": round(result.setup_kib / 1024, 1),
        "peak_mib": round(peak_kib / 1024, 1)}, indent=2))


def run_all(targets: list[str], cases: int, jobs: int, scratch: Path) -> list[dict]:
    """Each target in a child process (stderr, where libsndfile's decoders chatter, to a log beside its result)."""
    scratch.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}

    def child(target: str) -> dict:
        out = scratch / f"{target}.json"
        with open(scratch / f"{target}.log", "w") as log:
            code = subprocess.call([sys.executable, __file__, "--one", target, "--cases", str(cases), "--json", str(out)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
        if code != 0:
            return {"target": target, "about": "", "cases": 0, "crashes": {f"the fuzz process died (exit {code}); "
                    f"see {scratch / (target + '.log')}": 1}, "examples": {}, "seconds": 0, "setup_mib": 0, "peak_mib": 0}
        return json.loads(out.read_text())

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(child, targets))


def markdown(results: list[dict], refusals: list[tuple[str, str, str]]) -> str:
    """The report: one table row per target, its crashes, then the broker's refusals and their one-line messages."""
    lines = ["# Security: hostile input by the hundred thousand, and the broker's refusals", "",
             "Written by `make fuzz` (`experiments/fuzz.py`). Each target runs in its own process: hypothesis draws "
             "the cases; a case passes when it ends in an answer or in ssad's own error (`ssad.core.errors`, one "
             "line in the CLI), fails when anything else is raised (in the CLI a traceback, or a line that names no "
             "file) or an accepted input is wrong (NaN samples, samples held beyond the file's size, a message over the limit taken). Peak memory "
             "is the fuzz process's maximum resident set (getrusage), Python, numpy, libsndfile and hypothesis included: "
             "once the target's fixture is made (for the detector: a tiny network, enrolled on 5 clips, with torch), "
             "and at the end of the cases.",
             "", "| target | what is fed | cases tried | crashes / tracebacks | seconds | peak memory after the "
             "fixture (MiB) | peak memory at the end (MiB) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['target']} | {r['about']} | {r['cases']:,} | {sum(r['crashes'].values())} | "
                     f"{r['seconds']:g} | {r['setup_mib']:g} | {r['peak_mib']:g} |")
    for r in results:
        if r["crashes"]:
            lines += ["", f"## Crashes of {r['target']}", ""]
            lines += [f"- {n} x {what}: first case {r['examples'].get(what, '')}" for what, n in r["crashes"].items()]
    if refusals:
        lines += ["", "## The broker's refusals (`ssad monitor`, mosquitto with TLS, a password file and an ACL)", "",
                  "| case | the one line on stderr | how it ends |", "| --- | --- | --- |"]
        lines += [f"| {case} | `{message}` | {ending} |" for case, message, ending in refusals]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse the options; fuzz one target (`--one`, the child) or all of them and write the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES, help="cases per target (default: %(default)s)")
    parser.add_argument("--targets", nargs="+", default=None, help="default: all of fuzz_targets.TARGETS")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the report (default: %(default)s)")
    parser.add_argument("--no-refusals", action="store_true", help="leave out the broker's refusals (no mosquitto)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.cases, args.json)
        return
    sys.path.insert(0, str(HERE))
    import fuzz_targets
    from refusals import broker_refusals

    targets = args.targets or list(fuzz_targets.TARGETS)
    results = run_all(targets, args.cases, args.jobs, args.out.parent / "security.tmp")
    refusals = [] if args.no_refusals else broker_refusals()
    report = markdown(results, refusals)
    old = args.out.read_text() if args.out.is_file() else ""
    if KEPT in old:
        report += "\n" + old[old.index(KEPT):]
    args.out.write_text(report)
    print(report)
    if any(r["crashes"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
