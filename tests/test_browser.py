"""The dashboard in a real browser: `diffsde dashboard` on localhost, headless Chromium driven by
Selenium, over three real runs (two seeds of one spec and another SDE).

AppTest (tests/test_dashboard*.py) runs the page scripts but never the frontend; this catches what
only a browser shows: the server starting, page routing, the URL carrying the state (and being
rewritten as it changes), elements rendering, the editor validating while one types (no blur,
no Ctrl+Enter), table rows ticked with the mouse, charts kept (not re-created) by the Monitor's
refresh.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Without them the
tests are skipped locally and fail under CI (``$CI`` set), so CI cannot pass without running them.
``DIFFSDE_SCREENSHOT=bench/figures/dashboard_compare.png`` also saves the Compare page's
screenshot there (the README's figure).
"""

import os
import re
import shutil
import time
import urllib.parse
import urllib.request

import pytest

from diffsde._cli import main
from diffsde.runs import list_runs
from tests.dashboard_server import DashboardServer
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


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
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
    profile = tmp_path_factory.mktemp("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def dashboard(chromium, tmp_path_factory):
    """Four finished runs (8x8 "images", then 2-D vp seeds 3 and 4 and ve seed 3) and
    `diffsde dashboard` serving them (on 127.0.0.1, its default); yields (url, the three 2-D
    records oldest first, the image run)."""
    root = tmp_path_factory.mktemp("browser")
    runs = root / "runs"
    runs.mkdir()
    # Started first: it comes up while the runs train (the pages read the store afresh).
    server = DashboardServer(
        runs,
        root / "dashboard.log",
        STREAMLIT_SERVER_FILE_WATCHER_TYPE="none",
        STREAMLIT_CLIENT_TOOLBAR_MODE="viewer",  # no Deploy button in the screenshot
    )
    # the oldest: 64-dimensional points, shown as 8x8 images
    (root / "image.yaml").write_text(
        SPEC.replace("NAME", "tiny-img").replace("SDE", "vp").replace("dim: 2", "dim: 64")
    )
    assert main(["run", str(root / "image.yaml"), "--runs-dir", str(runs), "-q"]) == 0
    for name, sde, seed in (("tiny-vp", "vp", 3), ("tiny-vp", "vp", 4), ("tiny-ve", "ve", 3)):
        spec = root / f"{name}-{seed}.yaml"
        text = SPEC.replace("NAME", name).replace("SDE", sde).replace("seed: 3", f"seed: {seed}")
        spec.write_text(text)
        assert main(["run", str(spec), "--runs-dir", str(runs), "-q"]) == 0
    image, *records = list_runs(runs)
    assert image.name == "tiny-img"
    try:
        server.wait_healthy(TIMEOUT)
        yield server.url, records, image
    finally:
        server.stop()


IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CHARTS = '[data-testid="stVegaLiteChart"] svg'


class Page:
    """The browser on one dashboard: open a path, wait for a condition, read the page."""

    def __init__(self, driver, url):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.url, self.by = driver, url, By
        self.wait = WebDriverWait(driver, TIMEOUT, ignored_exceptions=(Exception,))

    def open(self, path: str, ready: str) -> None:
        """Load ``path`` (a fresh session, as a refresh or a link) and wait until the script is
        idle and ``ready`` is on the page."""
        self.driver.get(self.url + path)
        self.until(lambda: self.idle() and ready in self.text())

    def until(self, condition) -> None:
        self.wait.until(lambda _: condition())

    def idle(self) -> bool:
        return bool(self.driver.find_elements(self.by.CSS_SELECTOR, IDLE))

    def text(self) -> str:
        return self.driver.find_element(self.by.TAG_NAME, "body").text

    def find(self, css: str):
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def all(self, css: str):
        return self.driver.find_elements(self.by.CSS_SELECTOR, css)

    def button(self, label: str):
        return self.driver.find_element(self.by.XPATH, f"//button[.//p[text()={label!r}]]")

    def nav(self, title: str) -> None:
        """Go to another page through the sidebar (the same session)."""
        link = self.driver.find_element(
            self.by.XPATH, f"//a[@data-testid='stSidebarNavLink'][.//span[@label={title!r}]]"
        )
        link.click()
        self.until(lambda: self.idle() and self.find("h1").text == title)

    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlparse(self.driver.current_url).query)


def _label(record) -> str:
    return f"{record.name} · seed {record.spec['seed']} · {record.id.rsplit('-', 1)[-1]}"


def test_compare_page_in_chromium(chromium, dashboard, tmp_path):
    """The older ``?runs=ID,ID`` link opens the comparison, and the URL is rewritten to the
    selection; runs are told apart by name · seed · short id; the reference is drawn over the
    samples on a square chart; the selection survives a visit to another page, and metric and
    smoothing come from the URL."""
    url, records, _ = dashboard
    page = Page(chromium, url)
    ids = [r.id for r in records]
    page.open(f"/compare?runs={','.join(ids)}", "Samples")
    # Charts draw after the script finishes: the curves and one sample plot per run.
    page.until(lambda: len(page.all(CHARTS)) == 1 + len(records))
    assert page.query()["runs"] == ids  # ?runs=ID&runs=ID: the state is in the URL
    screenshot = tmp_path / "compare.png"
    assert chromium.save_screenshot(str(screenshot))
    shown = page.text()
    # Data frames draw on a canvas; their accessible table mirror carries the cells.
    frames = [f.get_attribute("textContent") for f in page.all('[data-testid="stDataFrame"]')]
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    if target := os.environ.get("DIFFSDE_SCREENSHOT"):
        shutil.copyfile(screenshot, target)
    for label in ("Runs", "Compare", "Plugins"):  # st.navigation's sidebar, not the legacy one
        assert label in shown.splitlines()
    labels = [_label(r) for r in records]
    assert len(set(labels)) == 3  # the two seeds of tiny-vp are told apart
    for label in labels:
        assert shown.count(label) >= 3  # picked, legend, sample header (and the tables)
    for heading in ("Training curves", "Final metrics", "Over seeds", "Spec diff", "Samples"):
        assert heading in shown
    metrics, seeds, diff = frames
    assert "eval.sliced_w2" in metrics and all(label in metrics for label in labels)
    assert "20 (all 2 equal)" in seeds and "20.0" not in seeds
    assert not re.search(r"± 0(\.0*)?(?![.\d])", seeds)  # no "± 0" for identical values
    assert "sde.type" in diff and "training.batch_size" not in diff
    assert "`sliced_w2`" not in shown and "eval.sliced_w2: lowest" in shown
    scatter = page.all(CHARTS)[1]
    assert scatter.get_attribute("width") == scatter.get_attribute("height")  # equal aspect
    svg = scatter.get_attribute("outerHTML")
    samples, reference = svg.find('fill="#1f77b4"'), svg.find('fill="#ff7f0e"')
    assert 0 < samples < reference  # the reference is drawn after (over) the samples

    page.nav("Plugins")
    page.nav("Compare")  # back: the selection is kept (session), and in the URL again
    page.until(lambda: page.query().get("runs") == ids and labels[0] in page.text())
    page.open(f"/compare?runs={ids[0]}&runs={ids[1]}&metric=grad_norm&smoothing=0.5", "Samples")
    assert page.query()["runs"] == ids[:2] and labels[2] not in page.text()
    picked = page.find('[data-testid="stSelectbox"] input').get_attribute("value")
    assert picked == "grad_norm"
    page.until(lambda: "grad_norm" in page.all(CHARTS)[0].get_attribute("outerHTML"))  # y axis
    assert "0.50" in page.find('[data-testid="stSlider"]').get_attribute("textContent")


def test_runs_page_in_chromium(chromium, dashboard):
    """A filter from the URL; a bad one shows the error and no runs; a row ticked in the table
    becomes the selection (and the URL's); Compare selected and Clone open their pages."""
    from selenium.webdriver.common.action_chains import ActionChains

    url, records, _ = dashboard
    page = Page(chromium, url)
    page.open("/?filter=" + urllib.parse.quote('sde.type == "ve"'), "of 4 runs")
    assert "1 of 4 runs" in page.text()
    page.open("/?filter=" + urllib.parse.quote("-sde.type == 1"), "of 4 runs")
    assert "bad filter — no runs shown" in page.text() and "0 of 4 runs" in page.text()
    page.open("/", "of 4 runs")
    assert "4 of 4 runs" in page.text()
    table = page.find('[data-testid="stDataFrame"]')
    page.until(lambda: "sde.type" in table.get_attribute("textContent"))
    header = table.get_attribute("textContent")
    assert header.index("eval.sliced_w2") < header.index("sde.type")  # results first
    # tick the first row (the newest run): the row-marker column at the grid's left edge
    grid = page.find('[data-testid="stDataFrame"] canvas')
    box = grid.rect
    ActionChains(chromium).move_to_element_with_offset(
        grid, -box["width"] / 2 + 15, -box["height"] / 2 + 35 + 17
    ).click().perform()
    newest = records[-1]
    page.until(lambda: page.query().get("runs") == [newest.id])
    assert _label(newest) in page.find('[data-testid="stMultiSelect"]').text
    page.button("Clone").click()  # New run, from that run's resolved spec
    page.until(lambda: page.idle() and page.all("textarea.dsde-text"))
    text = page.find("textarea.dsde-text").get_attribute("value")
    assert text == newest.spec_yaml
    page.open("/?runs=" + "&runs=".join(r.id for r in records[:2]), "of 4 runs")
    page.button("Compare selected").click()
    page.until(lambda: page.idle() and "Final metrics" in page.text())
    assert page.query()["runs"] == [r.id for r in records[:2]]


def test_new_run_page_in_chromium(chromium, dashboard):
    """The editor is monospace with line numbers, Launch is above the fold, and the text is
    validated while typing: the editor marks its text as not validated yet until the verdict
    arrives, with no blur and no Ctrl+Enter."""
    from selenium.webdriver.common.keys import Keys

    url, _, _ = dashboard
    page = Page(chromium, url)
    page.open("/new_run", "valid")
    page.until(lambda: page.all("textarea.dsde-text"))
    editor = page.find("textarea.dsde-text")
    assert "monospace" in editor.value_of_css_property("font-family")
    assert page.find(".dsde-gutter").text.split()[:3] == ["1", "2", "3"]
    launch = page.button("Launch")
    assert launch.rect["y"] + launch.rect["height"] < chromium.execute_script(
        "return window.innerHeight"
    )
    assert launch.rect["y"] < editor.rect["y"]
    assert "✓ valid" in page.text()
    status = page.find('[data-testid="dsde-editor-status"]')
    editor.send_keys(Keys.CONTROL, Keys.END)
    editor.send_keys("\nbogus_key: 1")
    assert status.text == "edited — validating…"  # the verdict shown is not for this text
    page.until(lambda: "✗ 1 problem" in page.text() and status.text == "validated")
    page.until(lambda: "bogus_key: unknown key" in page.text())  # the CLI's line, verbatim
    assert not launch.is_enabled()
    assert page.find(".dsde-gutter").text.split()[-1] == str(
        editor.get_attribute("value").count("\n") + 1
    )
    editor.send_keys(Keys.BACKSPACE * len("\nbogus_key: 1"))
    page.until(lambda: "✓ valid" in page.text() and launch.is_enabled())


def test_monitor_page_in_chromium(chromium, dashboard):
    """The Monitor shows a rate (not "?"), and its refresh every 2 s leaves a chart whose spec
    and data did not change alone: the same chart is still on the page after a refresh (the
    specs are fixed dicts with the data passed beside them, under stable keys). Mutation: a
    spec that changes every refresh (a timestamp in the title) makes this fail."""
    from selenium.common.exceptions import StaleElementReferenceException

    url, records, _ = dashboard
    page = Page(chromium, url)
    page.open("/monitor", "steps/s")
    page.until(lambda: len(page.all(CHARTS)) == 3)
    assert "completed" in page.find('[data-testid="stSelectbox"] input').get_attribute("value")
    metrics = {
        m.text.splitlines()[0]: m.text.splitlines()[-1]
        for m in page.all('[data-testid="stMetric"]')
    }
    assert metrics["steps/s"] != "?" and float(metrics["steps/s"]) > 0
    chart = page.all(CHARTS)[0]
    time.sleep(3.0)  # the fragment refreshes every 2 s
    try:
        assert chart.is_displayed()
    except StaleElementReferenceException:
        pytest.fail("the Monitor's refresh re-created its charts (they flicker)")


def test_digits_grid_in_chromium(chromium, dashboard):
    """8x8 images: the samples' grid and the reference's side by side, each shown at its own
    pixel size (upscaled 6x by repetition, PNG), so the browser does not resample (blur) them.
    Mutation: showing the raw 35x35 tile stretched to the column width fails this."""
    url, _, image = dashboard
    page = Page(chromium, url)
    page.open(f"/compare?runs={image.id}", "Samples")
    page.until(lambda: len(page.all('[data-testid="stImage"] img')) == 2)
    shown = page.all('[data-testid="stImage"] img')
    page.until(
        lambda: all(chromium.execute_script("return arguments[0].complete", i) for i in shown)
    )
    side = 6 * (4 * 8 + 3)  # 4 images of 8 pixels and 3 gaps a row, each pixel 6x6
    for img in shown:
        natural, drawn = chromium.execute_script(
            "return [arguments[0].naturalWidth, arguments[0].getBoundingClientRect().width]", img
        )
        assert natural == side and drawn == pytest.approx(side, abs=1)
    assert "samples" in page.text() and "reference" in page.text()
