"""The studio in a real headless browser (Debian's chromium driven by Playwright) against a real
`tunelab studio` process on a loopback port: upload, a bad upload's error (the CLI's own
message), a training job whose curves grow without navigating, Stop, Resume, the finished run,
two runs compared, Try it, and the Chinese page. Screenshots go to tests/artifacts/studio/."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from browser_helpers import chromium_page, open_page
from conftest import toy_rows, write_csv
from serving_helpers import Server

SHOTS = Path(__file__).parent / "artifacts" / "studio"
TUNELAB = str(Path(sys.executable).parent / "tunelab")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir, toy_data):
    d = tmp_path_factory.mktemp("studio")
    mp = pytest.MonkeyPatch()
    mp.setenv("TUNELAB_MODELS", str(d / "models.yaml"))
    s = Server(
        ["--runs-dir", str(d / "runs")],
        d / "studio.log",
        wait_ready=False,
        command=[TUNELAB, "studio"],
    )
    mp.undo()
    s.wait("/healthz")
    # a short run queued first: the second run to compare, done before the page's own run
    quick = s.request(
        "POST",
        "/v1/studio/jobs",
        {
            "name": "quick",
            "model": str(tiny_model_dir),
            "train": str(toy_data["train"]),
            "validation": str(toy_data["validation"]),
            "epochs": "2",
            "learning_rate": "1e-3",
            "max_length": "32",
        },
    )
    assert quick[0] == 200, quick
    yield s
    s.stop()


@pytest.fixture(scope="module")
def page(studio):
    with chromium_page(SHOTS) as pg:
        yield pg


def _shot(pg, name: str) -> None:
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_data_page_previews_an_upload_and_shows_the_cli_error_for_a_bad_one(
    studio, page, tmp_path, tiny_model_dir
):
    good = write_csv(tmp_path / "reviews.csv", toy_rows(40, 7))
    open_page(page, studio.url + "/studio/data")
    page.set_input_files("#upload", str(good))
    page.wait_for_selector("#data-preview:not([hidden])")
    assert page.inner_text("#data-count") == "40"
    assert page.locator("#data-rows tbody tr").count() == 20
    _shot(page, "data")

    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood film,positive\nbad film,\nok,negative\n", encoding="utf-8")
    page.set_input_files("#upload", str(bad))
    page.wait_for_selector("#data-error:not([hidden])")
    shown = page.inner_text("#data-error")
    stored = page.inner_text("#data-path")  # the uploaded copy the page read
    cli = subprocess.run(
        [
            TUNELAB,
            "train",
            "--model",
            str(tiny_model_dir),
            "--train",
            stored,
            "--validation",
            stored,
            "--output-dir",
            str(tmp_path / "never"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode != 0
    assert cli.stderr.strip().splitlines()[-1] == f"tunelab: error: {shown}"
    assert ":3:" in shown and "label" in shown
    _shot(page, "data-error")


def test_train_watch_live_curves_stop_resume_and_finish(
    studio, page, tiny_model_dir, toy_data, tmp_path
):
    # 960 rows: 30 steps an epoch, so 40 epochs are 1,200 steps with only 40 evaluations
    train = write_csv(tmp_path / "train.csv", toy_rows(960, 11))
    q = f"train={train}&validation={toy_data['validation']}&test={toy_data['test']}"
    open_page(page, f"{studio.url}/studio/train?{q}")
    page.fill("#run-name", "live")
    page.fill("#f-model", str(tiny_model_dir))
    page.fill("#f-epochs", "40")  # 1,200 steps: long enough to watch, stop and resume
    page.fill("#f-max_length", "32")
    page.fill("#f-learning_rate", "1e-3")
    page.click("#sec-more >> xpath=..")  # open "More settings"
    page.fill("#f-eval_steps", "300")
    page.click("text=" + "Small data")
    page.fill("#f-early_stopping_patience", "0")
    page.wait_for_function(
        "document.querySelector('#command').textContent.includes('--eval-steps 300')"
    )
    assert "--early-stopping-patience 0" in page.inner_text("#command")
    assert "epochs: 40.0" in page.inner_text("#yaml")
    _shot(page, "train")
    page.click("#start")
    page.wait_for_url(re.compile(r"/studio/jobs/"))

    page.wait_for_function(
        "Number(document.querySelector('#job-points').textContent) >= 3", timeout=120_000
    )
    first = int(page.inner_text("#job-points"))
    url = page.url
    # new points arrive on the same page, with no navigation, within 5 s
    page.wait_for_function(
        f"Number(document.querySelector('#job-points').textContent) > {first}", timeout=5_000
    )
    assert page.url == url
    _shot(page, "live-run")

    page.click("#stop")
    page.wait_for_function("document.body.dataset.state === 'stopped'", timeout=60_000)
    assert page.is_visible("#resume")
    stopped_at = page.inner_text("#job-steps")
    page.click("#resume")
    page.wait_for_function("document.body.dataset.state === 'finished'", timeout=180_000)
    done, total = page.inner_text("#job-steps").split(" / ")
    assert done == total == "1200"  # 40 epochs of 30 batches
    assert int(stopped_at.split(" / ")[0]) < 1200
    page.wait_for_selector("#open-run:not([hidden])")
    _shot(page, "finished-run")
    jobs = studio.request("GET", "/v1/studio/jobs")[1]
    live = next(j for j in jobs if j["run"] == "live")
    assert live["resumes"] == 1 and "--resume" in live["argv"]


def test_compare_two_runs_and_try_a_model(studio, page):
    open_page(page, studio.url + "/studio/runs")
    page.wait_for_selector("tr[data-run='quick']")
    page.wait_for_selector("tr[data-run='live']")
    page.check("tr[data-run='quick'] input.pick")
    page.check("tr[data-run='live'] input.pick")
    page.click("#compare")
    page.wait_for_selector("#comparison:not([hidden])")
    settings = page.inner_text("#cmp-settings")
    assert "epochs" in settings and "40" in settings
    assert "test accuracy" in page.inner_text(
        "#cmp-metrics"
    ) or "validation accuracy" in page.inner_text("#cmp-metrics")
    _shot(page, "runs-compare")

    open_page(page, studio.url + "/studio/try")
    page.select_option("#try-run", "live")
    page.fill("#try-input", "a great and wonderful movie\nawful and boring")
    page.click("#predict")
    page.wait_for_selector("#try-results:not([hidden])")
    labels = page.locator(".pred-label").all_inner_texts()
    assert len(labels) == 2 and all(x in ("positive", "negative") for x in labels)
    _shot(page, "try-it")


def test_export_a_run_then_serve_it_and_call_it(studio, page):
    open_page(page, studio.url + "/studio/export")
    page.select_option("#export-run", "live")
    page.select_option("#export-format", "onnx")
    page.select_option("#export-quantize", "int8")
    page.click("#export")
    page.wait_for_function("document.body.dataset.exportState === 'finished'", timeout=180_000)
    page.wait_for_selector("#export-record:not([hidden])")
    record = page.inner_text("#export-table")
    assert "onnx" in record and "metrics_after" in record  # int8 accuracy measured and shown
    _shot(page, "export")

    open_page(page, studio.url + "/studio/export")  # the export is a run of its own now
    page.select_option("#serve-run", "live-onnx-int8")
    page.click("#serve")
    page.wait_for_selector(
        "tr[data-run='live-onnx-int8'] .serve-state:has-text('ready')", timeout=120_000
    )
    url = page.inner_text("tr[data-run='live-onnx-int8'] a")
    assert "curl" in page.inner_text("tr[data-run='live-onnx-int8'] pre")
    req = urllib.request.Request(
        f"{url}/v1/models/live-onnx-int8/predict",
        data=json.dumps({"inputs": ["a wonderful film"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert json.loads(r.read())["predictions"][0]["label"] in ("positive", "negative")
    _shot(page, "serve")
    page.click("tr[data-run='live-onnx-int8'] button")
    page.wait_for_selector("tr[data-run='live-onnx-int8']", state="detached")


def test_chat_without_a_router_says_what_to_do(studio, page):
    open_page(page, studio.url + "/studio/chat")
    page.fill("#chat-input", "is this review positive? great phone")
    page.click("#chat-send")
    page.wait_for_selector("#chat-error:not([hidden])")
    assert "route-train" in page.inner_text("#chat-error")
    _shot(page, "chat")


def test_the_page_speaks_chinese(studio, page):
    open_page(page, studio.url + "/studio/data")
    page.click("#lang-switch")
    page.wait_for_selector("#nav-data:has-text('数据')")
    open_page(page, studio.url + "/studio/runs")  # remembered in a cookie
    assert page.inner_text("#nav-runs") == "运行记录"
    _shot(page, "runs-zh")
    open_page(page, studio.url + "/studio/runs?lang=en")
