"""field_load.json, .md and .png from what `field_load.py` measured: the load table, each fault's figures, a timeline."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from ssad.core.atomic import write_text_atomic

__all__ = ["markdown", "plot", "write"]


def _stamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def markdown(result: dict) -> str:
    r, k, s, bad = result["broker_restart"], result["monitor_kill"], result["persistent_session"], result["malformed"]
    pr = result["profile"]
    lines = [
        "# `ssad monitor` under a plant's load and faults",
        "",
        f"Made by `{result['command']}` (`experiments/field_load.py`, see its docstring). A real mosquitto on "
        "127.0.0.1, simulated machines each publishing one 10-s window of PCM every 10 s (QoS 1, send time in "
        "the MQTT 5 user property `ts`), two `ssad monitor` processes sharing `$share/load/plant/+` (one torch "
        "thread each). Latency: a window's publish to its score line.",
        "",
        f"- detector: {result['model']}",
        f"- machine: {result['cpu']}; load average (1, 5, 15 min) before: {result['load_before']}, after: "
        f"{result['load_after']} (the machine was shared: figures under load are low)",
        f"- **most machines held in real time: {result['max_machines_realtime']}** "
        f"({result['machines_per_core']:g} per core of the machine; {result['machines_per_monitor_core']} per core "
        f"the monitors used then, {result['monitor_cpu_cores_at_max']} cores, peak memory "
        f"{result['monitor_peak_mb']:.0f} MB per monitor); latency p50 {result['latency_p50_s']} s, p99 "
        f"{result['latency_p99_s']} s; windows {result['windows_scored']} scored of {result['windows_expected']}",
        f"- what limited the load: {result['limit']}",
        f"- where one monitor's time goes ({pr['windows']} windows flooded through the broker, one torch thread, under cProfile, "
        f"load average {pr['load_average']}): {pr['ms_per_window']} ms per 10-s window; the network "
        f"{100 * pr['network_share']:.0f} %, log-mels {100 * pr['log_mel_share']:.0f} %, scorer and batching "
        f"{100 * pr['scorer_and_batching_share']:.0f} %, MQTT, decoding, windows, JSON lines and acknowledgements "
        f"{100 * pr['mqtt_decoding_python_share']:.0f} %",
        "",
        "| machines | windows expected | scored within 10 s of the step | not | never scored | scored twice "
        "| latency p50 (s) | p99 (s) | max (s) "
        "| monitors' CPU (cores) | broker's | publisher's | monitor peak MB | load average | held |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["steps"]:
        lines.append(f"| {row['machines']} | {row['windows_expected']} | {row['windows_scored']} | {row['lost']} "
                     f"| {row.get('never_scored', '?')} | {row['scored_twice']} | {row['latency_p50_s']} | {row['latency_p99_s']} | {row['latency_max_s']} "
                     f"| {row['monitor_cpu_cores']} | {row['broker_cpu_cores']} | {row.get('publisher_cpu_cores', '?')} "
                     f"| {row['monitor_peak_mb']} "
                     f"| {row['load_average']} | {'yes' if row['held'] else '**no**'} |")
    lines += [
        "",
        f"## Faults, at {result['fault_machines']} machines with 10 % garbage messages",
        "",
        "![latency of each window over the fault run](field_load.png)",
        "",
        f"- **Broker restart** (down {r['down_s']} s, broker persistence on): both monitors reported it on stderr "
        f"and as a JSON `broker_down` event: {r['reported']} ({r['report_delay_s']} s after the stop); they "
        f"reconnected {r['reconnect_s']} s after the broker was back (`broker_up` event). Windows published from "
        f"{result['lead_s']:g} s before the stop to the next fault: {r['windows_scored']} scored of {r['windows_expected']} "
        f"the broker routed, **{r['lost']} lost**, {r['scored_twice']} scored twice, latency max "
        f"{r['latency_max_s']} s; {r['dropped_by_broker_no_subscriber']} more were acknowledged by the broker with "
        "\"no matching subscribers\" and dropped (when publishers re-send what they held during the outage before "
        "the monitors have subscribed again: mosquitto 2.0.11 does not restore shared subscriptions from its "
        "database, plain ones it does).",
        f"- **SIGKILL of monitor {k['monitor']}**, restarted after {k['back_after_s']} s (as a service manager "
        f"would; most of it is loading torch and the detector): the other monitor went on with its own share at "
        f"once (its longest silence {k['other_longest_silence_s']} s), while mosquitto kept the killed monitor's "
        f"share in its session for its return. Windows published from {result['lead_s']:g} s before the kill to the next "
        f"fault: {k['windows_scored']} scored of {k['windows_expected']}, **{k['lost']} lost**, "
        f"{k['scored_twice']} scored twice (a message is acknowledged once its window is written, so a kill "
        f"between the two scores it again), the longest wait {k['latency_max_s']} s.",
        f"- **Monitor restart, persistent session vs none**: with a session (client id kept, session expiry "
        f"{result['session_expiry_s']} s) {s['with']['delivered_on_return']} windows published while it was down were "
        f"delivered on its return ({s['with']['lost']} lost); without one {s['without']['delivered_on_return']} "
        f"were (the other monitor took the whole stream at once; {s['without']['lost']} lost: what the killed one "
        "held unacknowledged is gone with its session).",
        f"- **Garbage**: {bad['sent']} bad messages ({', '.join(f'{n} {kind}' for kind, n in bad['kinds'].items())})"
        f" among the windows; the monitors counted {bad['counted']} in their heartbeats (a monitor killed loses "
        f"the counts since its last heartbeat) and wrote {bad['summary_lines']} summary lines on stderr over "
        f"{bad['heartbeats']} heartbeats (once per interval, not per message); the good windows alongside: "
        f"{bad['scored_alongside']['windows_scored']} scored of {bad['scored_alongside']['windows_expected']}.",
        "",
        f"Rerun on a quiet machine: `{result['command']}`.",
    ]
    return "\n".join(lines) + "\n"


def plot(series: list[tuple[str, list[dict]]], timeline: dict, path: Path) -> None:
    """Latency of every window of the fault run against its publish time, per monitor, with the faults marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = timeline["start"]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for label, lines in series:
        rows = [r for r in lines if r.get("sent") and t0 <= r["sent"] <= timeline["end"]]
        ax.scatter([r["sent"] - t0 for r in rows], [_stamp(r["time"]) - r["sent"] for r in rows], s=6, label=label)
    for key, label in (("down_at", "broker stopped"), ("up_at", "broker back"), ("kill_b", "b killed"),
                       ("back_b", "b back"), ("kill_a", "a killed"), ("back_a", "a back")):
        ax.axvline(timeline[key] - t0, color="grey", lw=0.8, ls="--")
        ax.text(timeline[key] - t0, ax.get_ylim()[1], label, rotation=90, va="top", ha="right", fontsize=7)
    ax.set_xlabel("window published at (s into the fault run)")
    ax.set_ylabel("latency to its score line (s)")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: dict, out: Path) -> None:
    """OUT.json and OUT.md, each written whole; the page is printed too."""
    write_text_atomic(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    page = markdown(result)
    write_text_atomic(out.with_suffix(".md"), page)
    print(page)
