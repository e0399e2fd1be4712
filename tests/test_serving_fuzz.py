"""OpenAPI-driven fuzzing (schemathesis) of a live `tunelab serve`: no input gives a 5xx, and
every response conforms to the schema (status codes declared, JSON bodies of the declared
shape, schema-valid requests accepted, schema-invalid ones refused).

Runs the schemathesis command line (its pytest plugin does not load under pytest 9) against
the server's own /openapi.json, with an admin key so that every operation is reached."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from serving_helpers import Server


def test_fuzzing_the_openapi_schema_finds_no_server_error(trained_runs, tmp_path):
    from tunelab.web.keys import add_key

    admin = add_key(tmp_path / "keys.txt", "fuzzer", admin=True)
    s = Server(
        [
            "--model",
            f"sent={trained_runs['full']}",
            "--api-keys-file",
            str(tmp_path / "keys.txt"),
            "--rate-limit",
            "0",
            "--max-wait-ms",
            "1",
            "--functions",
        ],
        tmp_path / "log",
    )
    try:
        exe = Path(sys.executable).parent / "schemathesis"
        r = subprocess.run(
            [
                str(exe),
                "run",
                f"{s.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "40",
                "--seed",
                "1",
                "--header",
                f"Authorization: Bearer {admin}",
                "--workers",
                "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-4000:]
        cases = re.search(r"(\d+) generated, (\d+) passed", out)
        assert cases and int(cases[1]) == int(cases[2]) >= 100, out[-4000:]
        assert "Failures:" not in out and "Errors:" not in out, out[-4000:]
    finally:
        s.stop()
    assert "Traceback" not in s.log.read_text()
