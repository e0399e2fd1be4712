"""``tunelab export --merge``: fold a run's adapter into its base model and write a plain
Transformers folder that loads with ``AutoModelFor...`` alone (no tunelab, no PEFT).

The folder also carries ``tunelab.json`` (method ``full``, with what was merged and from
where), so ``tunelab.load`` and ``tunelab predict`` read it like any run folder.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.methods import get_method
from tunelab.runs import RUN_FILE, check_output_dir, read_run, staged_dir, write_json


def export_merged(run_dir: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the merged model of ``run_dir`` to ``output_dir``.

    Returns:
        the export folder.
    Raises:
        TunelabError: the method cannot be merged (soft prompts, bottleneck adapters), or the
            run folder is not a finished run.
    """
    import tunelab

    run = Path(run_dir)
    info = read_run(run)
    method = get_method(info["method"])
    if method.merge is None:
        raise TunelabError(f"{run}: method '{method.name}' cannot be merged into the base "
                           "weights (it adds computation the base model does not have); load "
                           "the run folder with tunelab.load instead")
    check_output_dir(output_dir, overwrite)
    loaded = tunelab.load(run, device="cpu")
    merged = method.merge(loaded.model)
    with staged_dir(output_dir, overwrite) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        for name in ("metrics.json", "config.yaml"):
            if (run / name).is_file():
                shutil.copy2(run / name, tmp / name)
        described = {**info, "method": "full",
                     "export": {"kind": "merged", "merged_method": method.name,
                                "source_run": str(run.resolve()),
                                "created": datetime.now(timezone.utc).isoformat(
                                    timespec="seconds")}}
        write_json(tmp / RUN_FILE, described)
    return Path(output_dir)
