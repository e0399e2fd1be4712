"""Detection quality of `tunelab monitor` on the generated scenarios (part 1 of bench/monitor.py).

The criterion is the test suite's (tests/test_monitor_scenario.py): each burst's rule fires
within two windows of the burst's start (strictly after it), its alert resolves at or after the
burst's end and at most three windows later, and nothing else fires. Any other firing is a
false alert (on the baseline part of the stream).

Each variant's models are loaded once and wrapped in a memo keyed by the text (kept in
WORK/memo): the streams draw their posts from the same bundled reviews, so a text seen in an
earlier seed, variant or run is not run through the model again (the alerts are what is
measured here, not the speed).
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import time
from collections import Counter
from pathlib import Path

import yaml
from monitor_runs import ROOT, run, stream

RULES = ROOT / "configs" / "monitor" / "rules.yaml"
EXPECTED = {"negative": "negative-surge", "spike": "volume-spike", "mention": "entity-complaints"}


def judge(alerts: list[dict], truth: dict) -> dict:
    """The suite's criterion, per burst, plus every firing that belongs to no burst."""
    w = truth["window_s"]
    start = min(b["start_s"] - b["first_window"] * w for b in truth["bursts"].values())
    firing = [a for a in alerts if a["state"] == "firing"]
    matched: set[int] = set()
    bursts = {}
    for kind, rule in EXPECTED.items():
        b = truth["bursts"][kind]
        # the burst's alert: its rule's first firing after the burst starts, up to 3 windows
        # after it ends (later than 2 windows after the start is late: not in time)
        i = next(
            (
                i
                for i, a in enumerate(firing)
                if a["rule"] == rule and b["start_s"] < a["at"] <= b["end_s"] + 3 * w
            ),
            None,
        )
        fired = firing[i]["at"] if i is not None else None
        if i is not None:
            matched.add(i)
        res = next(
            (
                a["at"]
                for a in alerts
                if fired is not None
                and a["rule"] == rule
                and a["state"] == "resolved"
                and a["at"] > fired
            ),
            None,
        )
        delay = None if fired is None else (fired - b["start_s"]) / w
        bursts[kind] = {
            "rule": rule,
            "first_window": b["first_window"],
            "windows": b["windows"],
            "fired": fired is not None,
            "delay_windows": delay,
            "delay_min": None if delay is None else delay * w / 60,
            "in_time": fired is not None and fired <= b["start_s"] + 2 * w,
            "resolved": res is not None,
            "resolved_windows_after_end": None if res is None else (res - b["end_s"]) / w,
            "resolved_ok": res is not None and b["end_s"] <= res <= b["end_s"] + 3 * w,
        }
    false = [
        {"rule": a["rule"], "window": round((a["at"] - start) / w - 1), "value": a["value"]}
        for i, a in enumerate(firing)
        if i not in matched
    ]
    ok = all(v["in_time"] and v["resolved_ok"] for v in bursts.values()) and not false
    return {"bursts": bursts, "false_alerts": false, "passed": ok}


class Memo:
    """A loaded model (``predict``, ``labels``, ``backend``) whose predictions are kept by
    text, and saved to ``path`` (``save()``), so a rerun, or one after a kill, reuses them (the
    file is ignored once the run folder changes). The model runs in batches of at most 16:
    Gemma 3 270M in bf16 on 2 cores runs about twice as fast as at the Monitor's 64, and the
    predictions (so the alerts) do not depend on it beyond bf16 rounding."""

    def __init__(self, model, path: Path) -> None:
        self.model, self.labels, self.backend = model, model.labels, model.backend
        self.path = path
        self.stamp = (model.run_dir / "tunelab.json").stat().st_mtime
        self.memo: dict[str, dict] = {}
        if path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("stamp") == self.stamp:
                self.memo = saved["memo"]

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict]:
        new = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if new:
            out = self.model.predict(new, batch_size=min(batch_size, 16))
            self.memo.update(zip(new, out, strict=True))
        return [self.memo[t] for t in texts]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stamp": self.stamp, "memo": self.memo}, ensure_ascii=False))
        tmp.replace(self.path)


def _rules_without_keywords(work: Path) -> Path:
    """The shipped rules with no keyword lists: the mention rule sees NER entities only."""
    raw = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    raw["entities"] = {}
    out = work / "rules-ner-only.yaml"
    out.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


def _ner_found(ner: Memo, path: Path, entity: str) -> dict:
    """How the NER run sees the posts that name the scenario's entity (keyword match): the share
    where it returns an entity containing the name, and the entity texts it returns most."""
    from tunelab.monitor.engine import KeywordEntities

    names = KeywordEntities({entity: [entity]})
    texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
    about = [t for t in texts if names(t)]
    hit = sum(any(entity in e["text"] for e in ner.memo[t]["entities"]) for t in about)
    top = Counter(e["text"] for t in texts for e in ner.memo[t]["entities"]).most_common(8)
    types = Counter(
        e["type"] for t in about for e in ner.memo[t]["entities"] if entity in e["text"]
    )
    return {
        "posts_naming_entity": len(about),
        "ner_names_it": hit,
        "ner_names_it_share": round(hit / len(about), 3) if about else None,
        "types_given": dict(types),
        "top_ner_entities_in_stream": top,
    }


# places the MSRA NER run can name (LOC), with 9-13 negative held-out reviews each: the entity
# burst of the NER-only configuration that a news-trained NER can see
PLACES = ["北京", "上海", "香港"]


def variant_plan(variant: str, work: Path) -> list[tuple[str, str, Path, bool, list[str] | None]]:
    """(label, lang, rules file, with NER, the entity burst's names) for each configuration a
    variant measures."""
    if variant == "en":
        return [("en: MiniLM + keyword entities", "en", RULES, False, None)]
    if variant == "zh":
        return [("zh: Gemma-270M LoRA + keyword entities", "zh", RULES, False, None)]
    ner_only = _rules_without_keywords(work)
    return [
        ("ner (zh): NER only, bursts about places", "zh", ner_only, True, PLACES),
        ("ner (zh): NER only, bursts about brands", "zh", ner_only, True, None),
        ("ner (zh): NER + keyword lists, brands", "zh", RULES, True, None),
    ]


def measure(variants: list[str], seeds: list[int], work: Path, log) -> dict:
    import tunelab
    from tunelab.monitor.config import MonitorConfig
    from tunelab.monitor.engine import Monitor
    from tunelab.monitor.rules import load_rules
    from tunelab.monitor.sources import replay

    logging.getLogger("tunelab.monitor").setLevel(logging.ERROR)  # the alerts' log lines
    out: dict = {"criterion": __doc__.split("\n\n")[1].replace("\n", " "), "variants": {}}
    models: dict[str, Memo] = {}

    def model(name: str) -> Memo:
        if name not in models:
            memo = work / "memo" / f"{name}.json"
            models[name] = Memo(tunelab.load(run(name, work)["folder"]), memo)
        return models[name]

    if "en" in variants and "ner" in variants:
        out["ner_en"] = (
            "not measured: the only NER data available offline is MSRA (Chinese news, PER/LOC/"
            "ORG); no English NER set is bundled, so no run can name Hollywood, Disney or Bond"
        )
    for variant in variants:
        for label, lang, rules_file, with_ner, names in variant_plan(variant, work):
            t0 = time.perf_counter()
            sentiment = model("en" if lang == "en" else "zh")
            ner = model("ner") if with_ner else None
            rows = []
            for seed in seeds:
                path, truth = stream(work, lang, seed, names)
                db = work / "quality" / f"{variant}-{len(out['variants'])}-{seed}"
                shutil.rmtree(db, ignore_errors=True)
                cfg = MonitorConfig(
                    database=str(db / "m.db"),
                    rules=load_rules(rules_file, open_entities=with_ner),
                    rules_file=str(rules_file),
                    sentiment="(loaded)",
                )
                ts = time.perf_counter()
                summary = Monitor(cfg, model=sentiment, ner=ner).run(replay(path))
                row = {
                    "seed": seed,
                    "entity": truth["entity"],
                    "posts": truth["posts"],
                    "stored": summary.stored,
                    "seconds": round(time.perf_counter() - ts, 1),
                    **judge(summary.alerts, truth),
                    "alerts": summary.alerts,
                }
                if with_ner:
                    row["ner"] = _ner_found(ner, path, truth["entity"])
                for m in (sentiment, ner):
                    if m is not None:
                        m.save()
                rows.append(row)
                log(f"[quality] {label} seed {seed}: passed={row['passed']} "
                    f"false={len(row['false_alerts'])} {row['seconds']} s")  # fmt: skip
            out["variants"][label] = {
                "variant": variant,
                "lang": lang,
                "sentiment": f"{run('en' if lang == 'en' else 'zh', work)['folder']} "
                f"({sentiment.backend})",
                "ner": None if ner is None else f"{run('ner', work)['folder']} ({ner.backend})",
                "rules": str(rules_file),
                "seconds": round(time.perf_counter() - t0, 1),
                "seeds": rows,
                "aggregate": aggregate(rows),
            }
    return out


def aggregate(rows: list[dict]) -> dict:
    n = len(rows)
    agg: dict = {"seeds": n, "passed": sum(r["passed"] for r in rows)}
    for kind in EXPECTED:
        b = [r["bursts"][kind] for r in rows]
        delays = [x["delay_windows"] for x in b if x["delay_windows"] is not None]
        agg[kind] = {
            "fired": sum(x["fired"] for x in b),
            "in_time": sum(x["in_time"] for x in b),
            "resolved_ok": sum(x["resolved_ok"] for x in b),
            "delay_windows_median": statistics.median(delays) if delays else None,
            "delay_windows_min": min(delays, default=None),
            "delay_windows_max": max(delays, default=None),
        }
    agg["false_alerts"] = sum(len(r["false_alerts"]) for r in rows)
    agg["seeds_with_false_alerts"] = sum(bool(r["false_alerts"]) for r in rows)
    agg["false_alert_rules"] = dict(Counter(f["rule"] for r in rows for f in r["false_alerts"]))
    return agg


def table(q: dict) -> str:
    """The printed summary: one line per configuration and burst kind, then the false alerts."""
    lines = [
        f"{'configuration':42} {'burst':9} {'in time':>8} {'delay, windows (min)':>26} "
        f"{'resolved':>9}"
    ]
    for label, v in q["variants"].items():
        a = v["aggregate"]
        for kind in EXPECTED:
            k = a[kind]
            if k["delay_windows_median"] is None:
                d = "never fired"
            else:
                d = (
                    f"med {k['delay_windows_median']:g} ({k['delay_windows_median'] * 5:g}) "
                    f"[{k['delay_windows_min']:g}-{k['delay_windows_max']:g}]"
                )
            lines.append(
                f"{label:42} {kind:9} {k['in_time']:>3}/{a['seeds']:<4} {d:>26} "
                f"{k['resolved_ok']:>3}/{a['seeds']}"
            )
        fr = ", ".join(f"{r} x{c}" for r, c in a["false_alert_rules"].items()) or "-"
        lines.append(
            f"{'':42} false alerts on the baseline: {a['false_alerts']} in "
            f"{a['seeds_with_false_alerts']}/{a['seeds']} seeds ({fr}); seeds passing the "
            f"suite's criterion: {a['passed']}/{a['seeds']}"
        )
        for r in v["seeds"]:
            if "ner" in r:
                n = r["ner"]
                lines.append(
                    f"{'':42} seed {r['seed']} entity {r['entity']}: NER names it in "
                    f"{n['ner_names_it']}/{n['posts_naming_entity']} posts naming it, types "
                    f"{n['types_given'] or '-'}; top NER entities "
                    f"{', '.join(f'{t}:{c}' for t, c in n['top_ner_entities_in_stream'][:5])}"
                )
    if "ner_en" in q:
        lines.append(f"ner (en): {q['ner_en']}")
    return "\n".join(lines)
