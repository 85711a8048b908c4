"""The console in headless Chromium (selenium), on a real history: the shipped encoder's detector with one machine
enrolled from the tiny set, `ssad monitor --history` on a stream that turns anomalous, `ssad serve`'s app under
uvicorn. The page lists the machine, draws its trend, shows the alarm's explanation in Hz with its picture,
updates live, and "this was normal" makes a new detector version; without the token it shows nothing.

Set SSAD_CONSOLE_SCREENSHOTS=FOLDER to keep screenshots of the pages.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssad.detector import store
from ssad.field.broker import free_port
from ssad.history import History, queries
from ssad.models import files as weights

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (weights.PACKAGE_DIR / "encoder.safetensors").is_file(),
                                                   reason="no encoder shipped in this checkout")]

TOKEN = "browser-test-token-42"
MACHINE = "plant/fan-1"


@pytest.fixture(scope="module")
def plant(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A detector with MACHINE enrolled, and the history of `ssad monitor --history` on normal-then-whining audio."""
    from ssad.cli import main

    folder = tmp_path_factory.mktemp("console-plant")
    train = sorted((tiny_root / "fan" / "train").glob("normal_id_00_*.wav"))
    assert main(["detector", "--pretrained", "--out", str(folder / "det"), "--quiet"]) == 0
    assert main(["enroll", "--detector", str(folder / "det"), "--machine", MACHINE, "--quiet", *map(str, train)]) == 0
    clips = [sf.read(p, dtype="float32") for p in sorted((tiny_root / "fan" / "test").glob("normal_id_00_*.wav"))]
    rate = clips[0][1]
    normal = np.concatenate([c for c, _ in clips])
    t = np.arange(normal.size) / rate
    whine = np.clip(normal + 3 * np.sqrt(np.mean(normal ** 2)) * np.sin(2 * np.pi * 2200 * t), -1, 1)
    sf.write(folder / "live.wav", np.concatenate([normal, whine]).astype("float32"), rate, subtype="PCM_16")
    assert main(["monitor", "--detector", str(folder / "det"), "--machine", MACHINE, "--source",
                 str(folder / "live.wav"), "--history", str(folder / "history.db"), "--heartbeat", "0"]) == 0
    return {"det": folder / "det", "history": folder / "history.db"}


@pytest.fixture(scope="module")
def server(plant: dict[str, Path]) -> Iterator[str]:
    """`ssad serve`'s app under uvicorn on 127.0.0.1 (a thread of this process); its address."""
    import uvicorn

    from ssad.console import create_app
    from ssad.console.auth import Access

    history = History(str(plant["history"]))
    app = create_app(history, plant["det"], Access(TOKEN), silent_after=3600, poll_seconds=0.5)
    port = free_port()
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(10)
    history.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium driven by chromedriver (Debian's chromium and chromium-driver, from `make setup`)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("no chromium or chromedriver: `make setup` installs them as root (apt-get install chromium "
                    "chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver: object, condition: object, timeout: float = 30.0) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _shot(driver: object, name: str) -> None:
    folder = os.environ.get("SSAD_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_without_the_token_the_browser_sees_no_machine(server: str, browser: object) -> None:
    browser.get(server + "/logout")  # no login cookie
    _wait(browser, lambda d: "Log in" in d.page_source)
    assert MACHINE not in browser.page_source
    browser.get(server + "/machine/" + MACHINE)
    _wait(browser, lambda d: "Log in" in d.page_source)
    assert MACHINE not in browser.page_source


def test_the_page_lists_the_machine_and_its_alarm_with_explanation_and_picture(server: str, browser: object,
                                                                             plant: dict[str, Path]) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/?token={TOKEN}")
    assert browser.current_url == server + "/"  # the token left the address bar for a cookie
    cookie = browser.get_cookie("ssad_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-machine="{MACHINE}"]')
    assert row.find_element(By.CSS_SELECTOR, ".state").text in queries.STATES
    alarm = browser.find_element(By.CSS_SELECTOR, "article.alarm")
    assert MACHINE in alarm.text and " Hz" in alarm.text.replace("kHz", " Hz")
    picture = alarm.find_element(By.CSS_SELECTOR, "img.picture")
    _wait(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", picture))
    assert browser.execute_script("return arguments[0].naturalWidth", picture) > 300
    _wait(browser, lambda d: "live," in d.find_element(By.ID, "live").text)  # the first poll came back
    _shot(browser, "console_index")

    with History(str(plant["history"])) as writer:  # a new window while the page is open
        writer.add_window(MACHINE, t=time.time(), score=123.4, threshold=1.5, smoothed=99.0, alert=False,
                          drift=True, learning=False, summary=None)
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-machine="{MACHINE}"] .score').text == "123.4")
    assert browser.find_element(By.CSS_SELECTOR, f'tr[data-machine="{MACHINE}"] .state').text == "drift"


def test_the_trend_draws_scores_threshold_and_alarms(server: str, browser: object) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/?token={TOKEN}")
    browser.find_element(By.LINK_TEXT, MACHINE).click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#trend-chart polyline.score"))
    for span in ("week", "hour"):
        browser.find_element(By.CSS_SELECTOR, f'button[data-span="{span}"]').click()
        _wait(browser, lambda d, span=span: d.find_element(By.ID, "trend").get_attribute("data-span") == span
              and d.find_elements(By.CSS_SELECTOR, "#trend-chart polyline.threshold"))
    points = browser.find_element(By.CSS_SELECTOR, "#trend-chart polyline.score").get_attribute("points").split()
    assert len(points) == int(browser.find_element(By.ID, "trend").get_attribute("data-points")) >= 1
    assert browser.find_elements(By.CSS_SELECTOR, "#trend-chart rect.alert")  # the alarm's windows, marked
    _shot(browser, "console_machine")


def test_this_was_normal_learns_the_alarm_as_a_new_detector_version(server: str, browser: object,
                                                                   plant: dict[str, Path]) -> None:
    from selenium.webdriver.common.by import By

    before = store.current_version(plant["det"])
    browser.get(f"{server}/?token={TOKEN}")
    browser.find_element(By.CSS_SELECTOR, 'article.alarm button[data-action="normal"]').click()
    result = _wait(browser, lambda d: "learned from" in d.find_element(By.CSS_SELECTOR, "article.alarm .result").text
                   and d.find_element(By.CSS_SELECTOR, "article.alarm .result"), timeout=120)
    assert f"(version {before + 1})" in result.text
    assert store.current_version(plant["det"]) == before + 1
    assert browser.find_element(By.ID, "detector-version").text == str(before + 1)
    with History(str(plant["history"])) as reader:
        (alarm,) = queries.alarms(reader, MACHINE)
        assert (alarm["label"], alarm["version"]) == ("normal", before + 1)
        assert queries.events(reader, MACHINE)[0]["kind"] == "feedback"


def test_undo_rolls_the_feedback_back_and_an_api_client_confirms_a_fault(server: str, browser: object,
                                                                         plant: dict[str, Path]) -> None:
    import json
    import urllib.request

    from selenium.webdriver.common.by import By

    learnt = store.current_version(plant["det"])
    browser.get(f"{server}/machine/{MACHINE}")
    browser.find_element(By.ID, "undo").click()
    _wait(browser, lambda d: "undid" in d.find_element(By.ID, "undo-result").text)
    assert store.current_version(plant["det"]) == learnt - 1
    with History(str(plant["history"])) as reader:
        (alarm,) = queries.alarms(reader, MACHINE)
        assert alarm["label"] is None  # its feedback was undone: it can be labelled again
    request = urllib.request.Request(f"{server}/api/alarm/{alarm['id']}/fault", method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        done = json.load(response)
    assert "confirmed fault" in done["message"] and store.current_version(plant["det"]) == done["version"] > learnt - 1
    with History(str(plant["history"])) as reader:
        assert queries.alarm(reader, alarm["id"])["label"] == "fault"


def test_a_monitor_stopped_by_sigterm_has_written_every_window_it_printed(plant: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    audio, rate = sf.read(plant["history"].parent / "live.wav", dtype="int16")
    command = [sys.executable, "-m", "ssad.cli", "monitor", "--detector", str(plant["det"]), "--machine", MACHINE,
               "--source", "-", "--history", str(tmp_path / "h.db"), "--heartbeat", "0", "--batch", "1"]
    monitor = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "WANDB_MODE": "disabled"})
    monitor.stdin.write(audio[: rate * 6].tobytes())  # six seconds, and the stream stays open
    monitor.stdin.flush()
    lines = [monitor.stdout.readline() for _ in range(3)]  # it is scoring
    assert all(lines)
    monitor.send_signal(signal.SIGTERM)
    rest, err = monitor.communicate(timeout=60)
    assert monitor.returncode == 130, err
    printed = len(lines) + len(rest.splitlines())
    with History(str(tmp_path / "h.db")) as history:
        points = queries.trend(history, MACHINE, 0, time.time() + 60, points=1)
    # every printed window is in the history (one more only if the signal fell between keeping and printing it)
    assert points and printed <= points[0]["n"] <= printed + 1
