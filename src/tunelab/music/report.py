"""``report.md`` of a music run: what was trained on what, how long it took, and its measures
against the held-out melodies and the baselines."""

from __future__ import annotations

from pathlib import Path

from tunelab.files import atomic_write_text

COLUMNS = [
    ("pitch_class_distance", "pitch-class dist."),
    ("duration_distance", "duration dist."),
    ("in_key_ratio", "in key"),
    ("empty_bar_ratio", "empty bars"),
    ("note_density", "notes/bar"),
    ("repetition", "repetition"),
    ("groove_consistency", "groove"),
    ("structure_gap", "structure gap"),
    ("two_sample_accuracy", "2-sample acc."),
]


def metric_table(rows: dict[str, dict]) -> list[str]:
    lines = ["| | " + " | ".join(h for _, h in COLUMNS) + " |",
             "|---|" + "--:|" * len(COLUMNS)]  # fmt: skip
    for name, row in rows.items():
        cells = [f"{row[k]:.3f}" if k in row else "" for k, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def write_report(folder: Path, record: dict) -> None:
    t, m, d = record["training"], record["metrics"], record["data"]
    lines = [
        f"# Music run: {record['kind'].upper()}",
        "",
        f"- data: {d['folder']} ({d['source']}{', ' + d['mode'] if d.get('mode') else ''}), "
        f"windows {d['windows']}",
        f"- fine-tuned from: {record['init']}" if record.get("init") else "- trained from scratch",
        f"- training: {t['epochs_run']} epochs in {t['seconds']:.0f} s "
        f"on {record['machine']['cpu']} ({record['machine']['cores']} cores)",
        "",
        f"## Samples from the prior (temperature 1, {m['samples']} unfiltered) against "
        f"{m['held_out_windows']} held-out windows",
        "",
        *metric_table(m["rows"]),
        "",
        "Distances are total variation (0 = the same histogram); the two-sample accuracy is a "
        "small classifier's at telling samples from held-out windows (0.5 = it cannot).",
    ]
    if "reconstruction" in m:
        r, i = m["reconstruction"], m["interpolation"]
        lines += [
            "",
            "## Reconstruction and interpolation",
            "",
            f"- reconstruction accuracy {r['reconstruction_accuracy']:.3f} per step "
            f"(note starts {r['note_accuracy']:.3f}, whole windows {r['window_accuracy']:.3f}), "
            f"greedy from the posterior mean; KL {r['kl_nats']:.1f} nats per window",
            f"- interpolation: largest step {i['max_jump']:.2f} of the end-to-end change, path "
            f"{i['path_ratio']:.2f}x the direct change, in key {i['in_key']:.3f}",
        ]
    atomic_write_text(folder / "report.md", "\n".join(lines) + "\n", what="report")
