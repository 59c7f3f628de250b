"""The MLflow UI, as a new user opens it over the store a pipeline wrote: headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, driven by Selenium) reads the rendered pages.

One fast ``dvc repro`` in a throwaway repository, one ``mlflow server`` on 127.0.0.1, one
browser session through the runs table, the run page and its dataset drawer, the compare view,
the registered version and the logged model. Screenshots of each page land in the test's
temporary directory (``pages/``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from audioclf.testing import HUB_DIR, trained_dvc_repo
from tests.servers import serve_mlflow, stop_group, unavailable

MODEL_NAME = "audioclf-intent"
PAGE_TIMEOUT_S = 60
CHROMIUM = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"


@dataclass
class Store:
    """What the pipeline left in MLflow: the ids the pages are addressed by."""

    root: Path
    experiment_id: str
    run_id: str
    run_name: str
    model_id: str


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A committed git + DVC repo after one fast ``dvc repro``: one run in ``mlflow.db``."""
    from mlflow.tracking import MlflowClient

    project = trained_dvc_repo(tmp_path_factory.mktemp("ui") / "repo")
    run_id = json.loads((project.root / "reports/mlflow_run.json").read_text())["run_id"]
    run = MlflowClient(f"sqlite:///{project.root / 'mlflow.db'}").get_run(run_id)
    [output] = run.outputs.model_outputs
    return Store(project.root, run.info.experiment_id, run_id, run.info.run_name, output.model_id)


@pytest.fixture(scope="module")
def ui(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` over the repo's store on 127.0.0.1, as ``mlflow ui`` opens it."""
    log = tmp_path_factory.mktemp("ui-server") / "mlflow-server.log"
    url, process = serve_mlflow(f"sqlite:///{store.root / 'mlflow.db'}", store.root, log)
    try:
        yield url
    finally:
        stop_group(process)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Chromium through Debian's chromedriver (skipped where it or Selenium is
    missing, failed where ``.ci/run`` requires them)."""
    binary = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    driver_path = shutil.which(CHROMEDRIVER)
    if binary is None or driver_path is None:
        unavailable("needs Chromium and chromedriver: apt-get install chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("needs Selenium: pip install -e '.[dev]'")

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1600,1000")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver) -> str:
    return driver.find_element("tag name", "body").text


def wait_for_text(driver, *expected: str) -> str:
    """The page's rendered text once it shows every ``expected`` string (the UI renders
    after its API calls answer)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, PAGE_TIMEOUT_S, poll_frequency=0.5).until(
            lambda d: all(text in page_text(d) for text in expected)
        )
    except TimeoutException:
        text = page_text(driver)
        missing = [t for t in expected if t not in text]
        pytest.fail(f"{driver.current_url} never showed {missing}; it shows:\n{text[:4000]}")
    return page_text(driver)


def open_page(driver, url: str, *expected: str) -> str:
    driver.get(url)
    return wait_for_text(driver, *expected)


def last_shown(driver, text: str, missing: str):
    """The last shown element whose own text holds ``text`` (an open drawer is last); the test
    fails, saying ``missing``, where none is shown."""
    shown = [
        element
        for element in driver.find_elements("xpath", f"//*[contains(text(), '{text}')]")
        if element.is_displayed()
    ]
    if not shown:
        pytest.fail(f"{driver.current_url}: {missing} {text!r}")
    return shown[-1]


def click_text(driver, text: str) -> None:
    """Click the last shown element whose own text holds ``text``."""
    element = last_shown(driver, text, "nothing to click reads")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


# The rows a scrolled pane shows, step by step, from the top: MLflow renders long tables
# (the compare view's metrics) only where they are in view.
SCROLL_AND_READ = """
let pane = arguments[0];
while (pane && !(pane.scrollHeight > pane.clientHeight + 1)) {
  pane = pane.parentElement;
}
if (!pane) { return arguments[0].innerText; }
const done = arguments[arguments.length - 1];
let seen = pane.innerText;
pane.scrollTop = 0;
const step = () => {
  seen += "\\n" + pane.innerText;
  if (pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 1) { done(seen); return; }
  pane.scrollTop += Math.max(20, pane.clientHeight / 2);
  setTimeout(step, 150);
};
step();
"""


def read_pane(driver, text: str) -> str:
    """Everything the scrolled pane holding ``text`` shows as it is scrolled through."""
    element = last_shown(driver, text, "no pane shows")
    driver.set_script_timeout(PAGE_TIMEOUT_S)
    return driver.execute_async_script(SCROLL_AND_READ, element)


def test_mlflow_ui_shows_the_data_the_figures_and_the_served_model(
    store: Store, ui: str, browser, tmp_path: Path
) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    experiment, run = store.experiment_id, store.run_id
    base = f"{HUB_DIR}-en-US"  # the datasets' names: <data.path>-<config>/<split>

    # The runs table, Model training (docs/mlflow.md's link): the run and its model version.
    text = open_page(
        browser,
        f"{ui}/#/experiments/{experiment}/runs?workflowType=machine_learning",
        store.run_name,
        f"{base}/train",
    )
    assert "Model training" in text and MODEL_NAME in text
    browser.save_screenshot(str(pages / "runs.png"))

    # The run page: its three inputs; the drawer says what each is, where it is and its profile.
    open_page(browser, f"{ui}/#/experiments/{experiment}/runs/{run}", "Datasets", "+2")
    click_text(browser, f"{base}/train")
    text = wait_for_text(browser, "3 datasets used", "Source type: Local", f"Path: {HUB_DIR}")
    assert "data.digest" in text and "num rows" in text and "class counts" in text
    assert all(column in text for column in ("audio", "binary", "speaker", "duration_s"))
    browser.save_screenshot(str(pages / "dataset-drawer.png"))
    for split, context in (("validation", "Validation"), ("test", "Test")):
        click_text(browser, f"{base}/{split}")
        wait_for_text(browser, context, f"Path: {HUB_DIR}")

    # Compare: the validation and test figures side by side (one run here; a sweep in use).
    open_page(
        browser,
        f'{ui}/#/compare-runs?runs=["{run}"]&experiments=["{experiment}"]',
        "Parallel Coordinates Plot",
        "system/cpu_utilization_percentage",
    )
    metrics = read_pane(browser, "system/cpu_utilization_percentage")
    assert "val_best/accuracy" in metrics and "test/accuracy" in metrics, metrics
    browser.save_screenshot(str(pages / "compare.png"))

    # The registered version: aliases, tags with the data digest and the test figures,
    # a description naming the run, and the signature's inputs.
    text = open_page(
        browser,
        f"{ui}/#/models/{MODEL_NAME}/versions/1",
        "champion",
        "candidate",
        "test/accuracy",
        "val_best/accuracy",
        "data.digest",
        f"Run {store.run_name} ({run})",
        "Inputs (3)",
    )
    click_text(browser, "Inputs (3)")
    wait_for_text(browser, "audio", "array", "sampling_rate", "binary")
    browser.save_screenshot(str(pages / "model-version.png"))

    # The logged model: each figure on the dataset it was computed on.
    text = open_page(
        browser,
        f"{ui}/#/experiments/{experiment}/models/{store.model_id}",
        "Datasets used",
        "val_best/accuracy",
        "test/accuracy",
        f"{base}/validation",
        f"{base}/test",
        MODEL_NAME,
    )
    browser.save_screenshot(str(pages / "logged-model.png"))
