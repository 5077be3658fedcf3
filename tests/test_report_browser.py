"""The run report in a real browser: Debian's headless Chromium, driven by Selenium, loads the
penguins run's report.html from a loopback HTTP server with every other address blocked.

Chromium and chromedriver come from Debian's packages (`make browser`, which `make test` runs).
A screenshot of the whole page is kept in test-artifacts/ (LAMINA_TEST_ARTIFACTS overrides).
"""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("LAMINA_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture(scope="module")
def report_url(penguins_run, tmp_path_factory):
    from lamina.pipeline.runs.summary import write_run_report

    _, result = penguins_run  # its own page, whatever later runs did to the run directory's report.html
    folder, name = str(tmp_path_factory.mktemp("report")), "report.html"
    write_run_report(result, os.path.join(folder, name))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{name}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    # Only `make test` run by a user who is not root sets LAMINA_NO_BROWSER; CI (root, CI=true) never skips.
    if (not chromium or not driver_path) and os.environ.get("LAMINA_NO_BROWSER") == "1" and not os.environ.get("CI"):
        pytest.skip("no Chromium on this machine, and `make test` could not install it (not root): "
                    "sudo apt-get install chromium chromium-driver runs this test too")
    if not chromium or not driver_path:
        pytest.fail("Chromium and chromedriver are needed: `make browser` installs Debian's chromium and "
                    "chromium-driver packages")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000",
                # The network is blocked: every name but loopback fails to resolve, and anything not on
                # loopback goes to a proxy on a closed loopback port.
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--proxy-server=http://127.0.0.1:9"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    yield driver
    driver.quit()


def test_report_renders_every_plot_offline_without_console_errors(browser, report_url, penguins_run):
    _, result = penguins_run
    browser.get(report_url)
    assert browser.title == "Lamina run: penguins"
    # Only the page itself was loaded: no script, style or font from anywhere else.
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert [r for r in resources if not r.startswith("http://127.0.0.1:")] == []

    # The page logged no errors (read before the probe below, whose failure Chromium logs).
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    # The network really is blocked for the page: a fetch of a CDN fails.
    blocked = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('https://cdn.jsdelivr.net/npm/plotly.js').then(() => done('fetched'), () => done('blocked'));")
    assert blocked == "blocked"


    # Every plot is an SVG the browser laid out with a real size and drew something in.
    plots = browser.execute_script("""
        return Array.from(document.querySelectorAll('figure.plot')).map(f => {
          const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
          return {kind: f.dataset.plot, width: box.width, height: box.height,
                  marks: svg ? svg.querySelectorAll('path, rect, use').length : 0};
        });""")
    kinds = {}
    for p in plots:
        assert p["width"] > 100 and p["height"] > 50 and p["marks"] > 5, p
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    # 4 numeric and 3 string columns, loss and accuracy curves, the confusion matrix, the features'
    # importance from Integrated Gradients, the TFLite sizes, the tuning trials' curves.
    assert kinds == {"histogram": 7, "curve": 2, "confusion": 1, "importance": 1, "sizes": 1, "trials": 1}

    text = browser.find_element("tag name", "body").text
    assert "Confusion matrix (eval split)" in text and "TFLite (quantized) models" in text
    assert "Explanations" in text and "global importance" in text
    # The tuning trials, the gates and the baselines beside the network.
    assert "Tuning" in text and "(best)" in text and "Baselines" in text and "gradient-boosted trees" in text
    assert "fairness: accuracy differs by" in text and "recall of class 'Chinstrap'" in text
    for form in ("float", "dynamic_range", "int8"):
        assert f"\n{form} " in text


    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 100, 16000))
    shot = ARTIFACTS / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 50_000  # a page of plots, not a blank one


def _fetch(browser, path):
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch({path!r}).then(r => r.json()).then(done, e => done(String(e)));")


@pytest.mark.parametrize("run", ["penguins_run", "text_run"])
def test_tensorboard_shows_histograms_projector_and_hparams(browser, run, request):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    from lamina.pipeline.cli.board import run_log_dirs, start_tensorboard

    spec, result = request.getfixturevalue(run)
    # This run's own folders (later tests may have rerun the same spec, which `lamina tensorboard` would pick).
    dirs = run_log_dirs(result.tensorboard_dir, result.tuner_dir)
    assert set(dirs) == {"trainer", "tuner"}  # both examples tune (the text one with two short trials)
    url, _ = start_tensorboard(dirs, port=0, load_once=True)  # every folder read before it returns
    assert url.startswith("http://127.0.0.1:")
    wanted = {"scalars", "histograms", "projector"} | ({"hparams"} if "tuner" in dirs else set())
    browser.get(url)

    def enabled(b):
        return {name for name, info in _fetch(b, "data/plugins_listing").items() if info["enabled"]}

    # TensorBoard's projector answers "not active" to the first listing and looks for embeddings in a thread
    # of its own; the page asks again, and so does this test, until every dashboard is on or a minute passes.
    try:
        WebDriverWait(browser, 60, poll_frequency=0.5).until(lambda b: wanted <= enabled(b))
    except TimeoutException:
        pass
    assert wanted & enabled(browser) == wanted

    # Histograms: weights and gradients of at most 12 layers, at most 10 epochs each.
    tags = _fetch(browser, "data/plugin/histograms/tags")["trainer/network"]
    weights = [t for t in tags if t.startswith("weights/")]
    assert weights and {t.replace("weights/", "gradients/", 1) for t in weights} <= set(tags)
    assert len({t.rsplit("/", 1)[0] for t in weights}) <= 12  # weights/<layer path>/<variable>
    series = _fetch(browser, f"data/plugin/histograms/histograms?run=trainer/network&tag={weights[0]}")
    assert 2 <= len(series) <= 10
    # The learning rate of every epoch the Trainer ran, as history.json lists them.
    from lamina.models.artifacts import HISTORY_FILE

    epochs = __import__("json").load(open(os.path.join(result.tensorboard_dir, HISTORY_FILE)))["epochs"]
    rates = _fetch(browser, "data/plugin/scalars/scalars?run=trainer/network&tag=learning_rate")
    assert [step for _, step, _ in rates] == [e["epoch"] for e in epochs]
    assert rates[0][2] > 0 and all(rate >= 0 for _, _, rate in rates)  # a warmup/decay schedule ends at 0

    # The projector: the head's input for eval examples with their labels, and each encoding.
    runs = _fetch(browser, "data/plugin/projector/runs")
    info = _fetch(browser, f"data/plugin/projector/info?run={[r for r in runs if r.endswith('projector')][0]}")
    tensors = {e["tensorName"].split("/")[0]: e for e in info["embeddings"]}
    expected = {"examples", "island_embedding", "sex_embedding"} if run == "penguins_run" else {"examples",
                                                                                              "text_encoding"}
    assert expected <= set(tensors)
    assert all(e.get("metadataPath") for e in tensors.values())
    assert tensors["examples"]["tensorShape"][0] == min(500, int(result.metrics["example_count"]))
    if run == "penguins_run":  # a row per island and per sex, and the out-of-vocabulary bucket
        assert tensors["island_embedding"]["tensorShape"][0] == 4 and tensors["sex_embedding"]["tensorShape"][0] >= 3

    if run == "penguins_run":  # every trial in the HParams dashboard, with its values and its curve
        from lamina.models.tuning import read_trials

        trials = read_trials(result.tuner_dir)["trials"]
        experiment = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('data/plugin/hparams/experiment', {method: 'POST', headers: {'Content-Type': 'application/json'},"
            " body: JSON.stringify({experimentName: ''})}).then(r => r.json()).then(done, e => done(String(e)));")
        names = {h["name"] for h in experiment["hparamInfos"]}
        assert names == set(trials[0]["values"])
        sessions = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('data/plugin/hparams/session_groups', {method: 'POST', headers: {'Content-Type': "
            "'application/json'}, body: JSON.stringify({experimentName: '', allowedStatuses: ['STATUS_UNKNOWN', "
            "'STATUS_SUCCESS', 'STATUS_FAILURE', 'STATUS_RUNNING'], colParams: [], startIndex: 0, sliceSize: 100})})"
            ".then(r => r.json()).then(done, e => done(String(e)));")
        assert sessions["totalSize"] == len(trials)

    # The page itself shows the dashboards' tabs once it has loaded.
    browser.get(url)
    wanted = ["HISTOGRAMS", "PROJECTOR"] + (["HPARAMS"] if run == "penguins_run" else [])
    WebDriverWait(browser, 60).until(lambda b: all(w in b.find_element("tag name", "body").text.upper()
                                                   for w in wanted))
