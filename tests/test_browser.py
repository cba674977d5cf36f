"""The dashboard in a real browser: `diffsde dashboard` on localhost, headless Chromium driven by
Selenium, the Compare page opened on two real runs through ``/compare?runs=ID,ID``.

AppTest (tests/test_dashboard.py) runs the page scripts but never the frontend; this catches what
only a browser shows: the server starting, the page routing, the elements rendering.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Without them the
test is skipped locally and fails under CI (``$CI`` set), so CI cannot pass without running it.
``DIFFSDE_SCREENSHOT=bench/figures/dashboard_compare.png`` also saves the screenshot there (the
README's figure).
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from diffsde._cli import main
from diffsde.runs import list_runs
from tests.tiny import tiny_spec

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Without the background-networking flags Chromium keeps retrying refused connections on a
# closed network and the page load hangs.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
)
SPEC = tiny_spec("NAME", sde="SDE")
TIMEOUT = 60  # seconds for the server to answer and for the page to render


@pytest.fixture
def chromium(tmp_path):
    """Headless Chromium under Selenium, or a skip; under CI (``$CI`` set) a missing piece fails.
    Checked before the runs are made, so a skip costs nothing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        message = f"browser test needs {', '.join(missing)}; `.ci/run` installs them"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: pathlib.Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"dashboard exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"dashboard did not answer {url} within {TIMEOUT} s:\n{log.read_text()}")


@pytest.fixture
def dashboard(tmp_path):
    """Two finished runs (vp, ve) and `diffsde dashboard` serving them; yields (url, run ids)."""
    runs = tmp_path / "runs"
    for name, sde in (("tiny-vp", "vp"), ("tiny-ve", "ve")):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(SPEC.replace("NAME", name).replace("SDE", sde))
        assert main(["run", str(spec), "--runs-dir", str(runs), "-q"]) == 0
    ids = [record.id for record in list_runs(runs)]
    port = _free_port()
    env = dict(
        os.environ,
        STREAMLIT_SERVER_HEADLESS="true",  # no browser opened, no e-mail prompt
        STREAMLIT_SERVER_ADDRESS="127.0.0.1",
        STREAMLIT_SERVER_FILE_WATCHER_TYPE="none",
        STREAMLIT_CLIENT_TOOLBAR_MODE="viewer",  # no Deploy button in the screenshot
    )
    command = [sys.executable, "-m", "diffsde._cli", "dashboard", "--runs-dir", str(runs)]
    log = tmp_path / "dashboard.log"
    with log.open("w") as out:
        # Its own process group: `diffsde dashboard` starts Streamlit as a child, and both go.
        server = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{url}/_stcore/health", server, log)
        yield url, ids
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_compare_page_in_chromium(chromium, dashboard, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, ids = dashboard
    wait = WebDriverWait(chromium, TIMEOUT)
    idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'

    def text():
        return chromium.find_element(By.TAG_NAME, "body").text

    # Straight to the comparison, as a bookmark would (the views live in app/views/, not in
    # a pages/ folder that would switch Streamlit to its legacy multipage mode).
    chromium.get(f"{url}/compare?runs={','.join(ids)}")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, idle) and "Samples" in text())
    # Charts draw after the script finishes: the curves and one sample plot per run.
    charts = '[data-testid="stVegaLiteChart"] svg'
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, charts)) == 3)
    screenshot = tmp_path / "compare.png"
    assert chromium.save_screenshot(str(screenshot))
    shown = text()
    # Data frames draw on a canvas; their accessible table mirror carries the cells.
    frames = [
        frame.get_attribute("textContent")
        for frame in chromium.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
    ]
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    if target := os.environ.get("DIFFSDE_SCREENSHOT"):
        shutil.copyfile(screenshot, target)
    for label in ("Runs", "Compare", "Plugins"):  # st.navigation's sidebar, not the legacy one
        assert label in shown.splitlines()
    for name, id in zip(("tiny-vp", "tiny-ve"), ids, strict=True):
        assert f"{name} ({id})" in shown  # both picked through ?runs=
    for heading in ("Training curves", "Final metrics", "Spec diff", "Samples"):
        assert heading in shown
    metrics, diff = frames
    assert "eval.sliced_w2" in metrics and all(id in metrics for id in ids)
    assert "sde.type" in diff and "training.batch_size" not in diff
