"""Notebook 11's widgets in a real browser: JupyterLab on localhost, Debian's Chromium driven headless by
Playwright. A notebook builds the EmotionController on a tiny trained run; the test drags the valence slider
and checks that the rendered head changed on screen. Skips when Chromium or Playwright is missing
(``data_scripts/browser_test_setup.sh`` installs both)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path(os.environ.get("ETLIB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT_COPY = Path("/tmp/widgets_screenshot.png")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None, reason="jupyterlab is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_run(request, tmp_path_factory) -> Path:
    """All six stages at two iterations each on the smoke subject: a trained run in seconds
    (``$ETLIB_WIDGETS_RUN`` names an existing run to use instead)."""
    import torch

    from etlib.config import StageIterations, get_preset
    from etlib.emoface.targets import make_emotion_targets
    from etlib.train import Trainer

    if os.environ.get("ETLIB_WIDGETS_RUN"):
        return Path(os.environ["ETLIB_WIDGETS_RUN"])
    smoke_subject = request.getfixturevalue("smoke_subject")
    preset = get_preset("smoke").with_overrides(iterations=StageIterations(2, 2, 2, 2, 2, 2))
    run = tmp_path_factory.mktemp("widgets_run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(smoke_subject.root, run, preset, progress=False, emotion_targets=make_emotion_targets()).run()
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture
def jupyter_lab(tmp_path, tiny_run):
    """A JupyterLab server (no token, a free port) whose root holds ``widgets.ipynb``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "from etlib.widgets import EmotionController\n"
            f"ctrl = EmotionController.from_run({str(tiny_run)!r})\n"
            "ctrl.widget()"
        )
    )
    nbformat.write(nb, tmp_path / "widgets.ipynb")
    port = _free_port()
    env = {**os.environ, "MPLBACKEND": "Agg", "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter_config")}
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        "--ip=127.0.0.1",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={tmp_path}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(tmp_path / 'jupyter.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        try:  # stops the kernel too
            urllib.request.urlopen(urllib.request.Request(f"{url}/api/shutdown", method="POST"), timeout=5)
        except OSError:
            pass
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.terminate()
            server.wait(timeout=10)
        log.close()


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def _drag_to_end(page, name: str) -> None:
    """Drag slider ``name``'s handle past the right end of its track, as a user would."""
    track = page.locator(f".etlib-{name} .noUi-target").bounding_box()
    handle = page.locator(f".etlib-{name} .noUi-handle").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] + 30, track["y"] + track["height"] / 2, steps=8)
    page.mouse.up()


def _run_first_cell(page, timeout_error) -> None:
    """Run the notebook's cell; a run asked for while the kernel is still connecting is dropped by JupyterLab
    (the prompt stays ``[ ]``), so ask again until the prompt shows it queued or done."""
    cell = page.locator(".jp-Notebook .jp-Cell").first
    prompt = ".jp-Notebook .jp-Cell .jp-InputPrompt"
    for _ in range(6):
        page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for()
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        try:
            page.wait_for_function(
                f"() => !/\\[ \\]/.test(document.querySelector('{prompt}').textContent)", timeout=8000
            )
            return
        except timeout_error:
            continue
    raise AssertionError("JupyterLab never ran the cell")


def _wait_for_status(page, text: str, timeout: float | None = None) -> None:
    page.wait_for_function(
        "(t) => [...document.querySelectorAll('.widget-label')].some(l => l.textContent.includes(t))",
        arg=text,
        timeout=timeout,
    )


def test_dragging_the_sliders_renders_a_new_head(jupyter_lab, tmp_path):
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(45_000)
        try:
            page.goto(f"{jupyter_lab}/lab/tree/widgets.ipynb")
            _run_first_cell(page, sync_api.TimeoutError)  # builds the controller and shows the UI

            head = page.locator("img.etlib-head")
            traceback = "[...document.querySelectorAll('[data-mime-type=\"application/vnd.jupyter.stderr\"]')]"
            traceback += ".find(o => o.textContent.includes('Traceback'))"
            page.wait_for_function(  # the first render (the kernel imports torch and loads the run), or an error
                f"() => {traceback} ||"
                " [...document.querySelectorAll('.widget-label')].some(l => l.textContent.includes('frame 0:'))",
                timeout=90_000,
            )
            error = page.evaluate(f"() => {{ const o = {traceback}; return o ? o.textContent : null; }}")
            assert error is None, f"the notebook cell failed: {error[-1500:]}"
            _wait_for_status(page, "e = (+0.00, +0.00), frame 0")
            page.wait_for_function("() => document.querySelector('img.etlib-head').naturalWidth > 0")
            first_src = head.get_attribute("src")
            neutral = _pixels(head.screenshot())
            valence = page.locator(".etlib-valence .widget-readout")
            frame = page.locator(".etlib-frame .widget-readout")
            readouts = [(valence.inner_text(), frame.inner_text())]

            _drag_to_end(page, "valence")  # e = (1, 0): the emotion branch's input changes
            _wait_for_status(page, "e = (+1.00, +0.00), frame 0")
            page.wait_for_function("(old) => document.querySelector('img.etlib-head').src !== old", arg=first_src)
            positive_src = head.get_attribute("src")
            positive = _pixels(head.screenshot())

            _drag_to_end(page, "frame")  # the scrubber: another pose, background and audio window
            _wait_for_status(page, "e = (+1.00, +0.00), frame ")
            page.wait_for_function("(old) => document.querySelector('img.etlib-head').src !== old", arg=positive_src)
            last_frame = int(frame.inner_text())
            _wait_for_status(page, f"e = (+1.00, +0.00), frame {last_frame}:")
            page.wait_for_function("() => document.querySelector('img.etlib-head').naturalWidth > 0")
            moved = _pixels(head.screenshot())
            readouts.append((valence.inner_text(), frame.inner_text()))
            news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's "Jupyter news?" toast
            if news.count():
                news.first.click()
                try:  # cosmetic: let the toast slide away before the screenshot
                    news.first.wait_for(state="hidden", timeout=3000)
                except sync_api.TimeoutError:
                    pass
            shot = tmp_path / "widgets_screenshot.png"
            page.screenshot(path=str(shot), full_page=True)
            shutil.copy(shot, SCREENSHOT_COPY)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)  # what the page showed
            print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()

    assert readouts[0] == ("0.00", "0") and readouts[1][0] == "1.00" and last_frame > 0
    valence_change = float(np.abs(positive - neutral).mean())
    scrub_change = float(np.abs(moved - positive).mean())
    assert scrub_change > 1.0, f"the head did not change on screen (mean |diff| {scrub_change:.3f} grey levels)"
    print(json.dumps({"valence_change": valence_change, "scrub_change": scrub_change, "screenshot": str(shot)}))
