"""Console scale: a day of history for a plant of 400 machines (a window every 5 s: ~6.9 million rows), on SQLite
and on PostgreSQL, and what the console's pages cost on it.

    python experiments/console_scale.py [--machines 400] [--hop 5] [--hours 24] [--backends sqlite postgresql]

Per backend: the rows are written through `History.add_windows` (the monitor's batched path: executemany of the
windows and an upsert of each machine's latest state) in batches of one minute of the plant, with one alarm per
machine in ten (with a picture-sized blob) and their events; then the write rate through `History.add_window` one
window at a time (the monitor's own call: buffered, a commit every 500 windows or second); the database's size; and
the console's machine list (GET /, the whole page rendered by the app, logged in) and a machine's day trend
(GET /api/trend?span=day: buckets grouped in the database), each timed several times over different machines.
PostgreSQL is a throwaway local cluster (`ssad.history.postgres.LocalPostgres`, fsync off). Writes
experiments/results/console.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TOKEN = "scale-benchmark-token"
#: a monitor core holds this many machines in real time (the issue's target: the history keeps up with it)
MACHINES_PER_CORE = 200


def plant_rows(machines: int, start: float, steps: int, hop: float, seed: int):  # noqa: ANN201 (a generator)
    """Rows of one minute of the plant at a time: every machine's window at each step, scores that drift a little."""
    rng = np.random.default_rng(seed)
    thresholds = rng.uniform(1.0, 3.0, machines)
    level = np.zeros(machines)
    per_batch = max(1, round(60 / hop))
    for first in range(0, steps, per_batch):
        rows = []
        for step in range(first, min(steps, first + per_batch)):
            level = 0.98 * level + rng.normal(0, 0.05, machines)
            scores = thresholds * 0.5 + level + rng.gamma(2.0, 0.1, machines)
            t = start + step * hop
            for m in range(machines):
                score = float(scores[m])
                rows.append({"machine_id": m + 1, "t": t, "score": score, "threshold": float(thresholds[m]),
                             "smoothed": score, "alert": bool(score > thresholds[m]), "drift": False,
                             "learning": False, "summary": None})
        yield rows


def database_size(history, folder: Path) -> int:  # noqa: ANN001
    """Bytes the history takes: the SQLite file and its WAL, or PostgreSQL's database size."""
    import sqlalchemy as sa

    if history.dialect == "sqlite":
        with history.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(p.stat().st_size for p in folder.glob("history.db*"))
    with history.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT pg_database_size(current_database())")).scalar())


def timed(call, repeats: int) -> list[float]:  # noqa: ANN001
    """Seconds each of `repeats` calls of `call(i)` took."""
    spent = []
    for i in range(repeats):
        began = time.perf_counter()
        call(i)
        spent.append(time.perf_counter() - began)
    return spent


def run_backend(backend: str, args: argparse.Namespace, folder: Path) -> dict:
    """Fill one history, then time the monitor's write path and the console's pages on it."""
    from starlette.testclient import TestClient

    from ssad.console import create_app
    from ssad.console.auth import Access
    from ssad.history import History
    from ssad.history.postgres import LocalPostgres

    server = LocalPostgres().start() if backend == "postgresql" else None
    try:
        history = History(server.url if server else str(folder / "history.db"))
        names = [f"plant/line-{m // 20:02d}/machine-{m % 20:02d}" for m in range(args.machines)]
        for name in names:
            history.machine_id(name)
        steps = round(args.hours * 3600 / args.hop)
        now = time.time()
        start = now - steps * args.hop
        rows = 0
        began = time.perf_counter()
        for batch in plant_rows(args.machines, start, steps, args.hop, seed=1):
            history.add_windows(batch)
            rows += len(batch)
        bulk_s = time.perf_counter() - began
        picture = os.urandom(30_000)
        for m in range(0, args.machines, 10):
            t = start + (m + 1) * 97.0
            alarm = history.open_alarm(names[m], t, kind="new narrowband line",
                                       summary="2129-2300 Hz +39 dB, throughout, new narrowband line",
                                       detail={"where": [{"low_hz": 2129.0, "high_hz": 2300.0, "change_db": 39.0,
                                                          "z": 12.0, "measure": "level"}]}, picture=picture)
            history.add_event("alarm", t, names[m], alarm=alarm)
            history.close_alarm(alarm, t + 60)
        # the monitor's own path: one window at a time, buffered and committed in small batches
        single = min(args.single, rows)
        began = time.perf_counter()
        for i in range(single):
            history.add_window(names[i % args.machines], t=now + i * 1e-3, score=1.0, threshold=2.0, smoothed=1.0,
                               alert=False, drift=False, learning=False, summary=None)
        history.flush()
        single_s = time.perf_counter() - began
        size = database_size(history, folder)
        app = create_app(history, args.detector, Access(TOKEN), silent_after=3600)
        with TestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            assert names[-1] in client.get("/").text
            list_s = timed(lambda i: client.get("/").raise_for_status(), args.repeats)
            api_s = timed(lambda i: client.get("/api/machines").raise_for_status(), args.repeats)
            picks = np.random.default_rng(2).choice(args.machines, args.repeats, replace=False)
            points = []

            def trend(i: int) -> None:
                response = client.get("/api/trend", params={"machine": names[picks[i]], "span": "day"})
                response.raise_for_status()
                points.append(len(response.json()["points"]))

            trend_s = timed(trend, args.repeats)
        history.close()
    finally:
        if server:
            server.stop()
    return {"backend": backend, "rows": rows, "machines": args.machines, "hop_s": args.hop, "hours": args.hours,
            "bulk_s": bulk_s, "bulk_rows_per_s": rows / bulk_s, "single_rows": single, "single_s": single_s,
            "single_rows_per_s": single / single_s, "bytes": size, "list_s": list_s, "api_machines_s": api_s,
            "trend_s": trend_s, "trend_points": points}


def _ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.0f} / {1000 * max(values):.0f}"


def report(results: list[dict], args: argparse.Namespace) -> str:
    """The markdown table of the results."""
    need = MACHINES_PER_CORE / args.hop
    lines = [
        "# Console scale: a day of a 400-machine plant in the history",
        "",
        f"Made by `python experiments/console_scale.py` ({args.date}): {args.machines} machines, a "
        f"window every {args.hop:g} s for {args.hours:g} h, written through `History.add_windows` in batches of one "
        "minute of the plant (executemany of the windows and an upsert of each machine's latest state), plus an alarm "
        "with a 30 kB picture for one machine in ten. Then the monitor's own path, `History.add_window` one window at "
        "a time (buffered, a commit every 500 windows or second). Load times: the console app (Starlette) called "
        f"in-process through its test client, logged in, {args.repeats} times each (median / worst), the day trend "
        f"for {args.repeats} different machines; the page cache is warm. SQLite: a file in WAL mode; PostgreSQL 15: a "
        "throwaway local cluster with fsync off. The machine has 2 cores shared with other jobs (two other sessions "
        "and this project's tests ran beside it), so the rates are a floor. The bulk write's time includes making "
        "the rows in Python. Load times are the app's own (database query and page rendering); HTTP over a socket "
        "and the browser's drawing come on top, as does a cold page cache after a restart.",
        "",
        "| backend | rows | bulk write (rows/s) | monitor path (windows/s) | database size | machine list page (ms) "
        "| /api/machines (ms) | day trend (ms) | trend points |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['rows']:,} | {r['bulk_rows_per_s']:,.0f} ({r['bulk_s']:.0f} s) | "
            f"{r['single_rows_per_s']:,.0f} | {r['bytes'] / 2**20:,.0f} MiB | {_ms(r['list_s'])} | "
            f"{_ms(r['api_machines_s'])} | {_ms(r['trend_s'])} | {min(r['trend_points'])}-{max(r['trend_points'])} |")
    lines += ["", "Targets:", ""]
    for r in results:
        ok_list = max(r["list_s"]) < 1.0
        ok_trend = max(r["trend_s"]) < 1.0
        ok_write = r["single_rows_per_s"] >= need
        lines.append(f"- {r['backend']}: machine list {'within' if ok_list else 'OVER'} 1 s (worst "
                     f"{1000 * max(r['list_s']):.0f} ms); day trend {'within' if ok_trend else 'OVER'} 1 s (worst "
                     f"{1000 * max(r['trend_s']):.0f} ms); writes {r['single_rows_per_s'] / need:,.0f}x what one "
                     f"monitor core's {MACHINES_PER_CORE} machines make ({need:g} windows/s at a {args.hop:g}-s hop) "
                     f"through the monitor's one-at-a-time path{'' if ok_write else ': TOO SLOW'}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the benchmark and write experiments/results/console.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machines", type=int, default=400)
    parser.add_argument("--hop", type=float, default=5.0)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--single", type=int, default=20_000, help="windows written one at a time")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--detector", default=None, help="a detector folder for the app (default: an empty one)")
    parser.add_argument("--out", default=str(RESULTS / "console.md"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the .json of a run")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads(Path(args.out).with_suffix(".json").read_text())
        args.machines, args.hop, args.hours = results[0]["machines"], results[0]["hop_s"], results[0]["hours"]
        args.repeats = len(results[0]["list_s"])
        args.date = time.strftime("%Y-%m-%d", time.localtime(Path(args.out).with_suffix(".json").stat().st_mtime))
        Path(args.out).write_text(report(results, args))
        print(Path(args.out).read_text())
        return
    results = []
    args.date = time.strftime("%Y-%m-%d")
    with tempfile.TemporaryDirectory(prefix="console-scale-") as tmp:
        if args.detector is None:
            (Path(tmp) / "detector").mkdir()
            args.detector = str(Path(tmp) / "detector")  # the pages read its version: an empty folder has none
        for backend in args.backends:
            folder = Path(tmp) / backend
            folder.mkdir()
            print(f"{backend}: writing {args.machines} machines x {args.hours:g} h ...", flush=True)
            results.append(run_backend(backend, args, folder))
            print(json.dumps({k: v for k, v in results[-1].items() if not isinstance(v, list)}), flush=True)
    Path(args.out).write_text(report(results, args))
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
