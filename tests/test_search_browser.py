"""The search page in a real browser: headless Chromium (selenium) types a query, sees the result
list and an <audio> element whose source loads. A tiny finetune checkpoint indexes an audio folder."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("faiss", reason="the search extra (faiss-cpu) is not installed")
pytest.importorskip("fastapi", reason="the search extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the search extra (uvicorn) is not installed")

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and Path(p).is_file()), None)
DRIVER = next((p for p in ("/usr/bin/chromedriver", shutil.which("chromedriver") or "") if p and Path(p).is_file()),
              None)


def _skip_reason() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not CHROMIUM or not DRIVER:
        return "no chromium/chromedriver found (Debian: apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def index(synth_corpus, tmp_path_factory):
    from audioret.models.dual_encoder import build_dual_encoder
    from audioret.search.config import IndexConfig
    from audioret.search.index import run

    spec = {"audio_encoder": "tiny-beats", "text_model": "tiny-roberta", "embed_dim": 16, "max_seconds": 30.0}
    torch.manual_seed(1)
    model = build_dual_encoder(spec)
    root = tmp_path_factory.mktemp("browser")
    ckpt = root / "ft" / "last.ckpt"
    ckpt.parent.mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": spec, "epoch": 0, "global_step": 1}, ckpt)
    audio = root / "sounds"
    audio.mkdir()
    src = synth_corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "evaluation"
    for f in sorted(src.iterdir())[:6]:
        shutil.copy(f, audio / f.name)
    run(IndexConfig(checkpoint=ckpt, out=root / "idx", audio_dir=audio, num_workers=0))
    return root / "idx"


@pytest.fixture(scope="module")
def server(index):
    import uvicorn

    from audioret.search.query import Searcher
    from audioret.search.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(Searcher(index)), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    reason = _skip_reason()
    if reason:
        print(f"SKIPPED browser test: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1000,900", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def test_page_finds_and_plays(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(EC.text_to_be_present_in_element((By.ID, "info"), "6 clips"))
    box = browser.find_element(By.ID, "query")
    box.send_keys("a dog barks in the distance", Keys.ENTER)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li.result")) == 6)
    rows = browser.find_elements(By.CSS_SELECTOR, "#results li.result")
    assert rows[0].find_element(By.CLASS_NAME, "rank").text == "#1"
    assert float(rows[0].find_element(By.CLASS_NAME, "score").text) >= \
        float(rows[-1].find_element(By.CLASS_NAME, "score").text)
    assert "of 6 clips" in browser.find_element(By.ID, "status").text
    audio = rows[0].find_element(By.TAG_NAME, "audio")
    src = audio.get_attribute("src")
    assert src.startswith(server + "/audio/")
    # the element itself loads its source (metadata decoded by the browser: readyState >= 1)
    wait.until(lambda d: d.execute_script("return arguments[0].readyState", audio) >= 1)
    assert browser.execute_script("return arguments[0].error", audio) is None
    assert browser.execute_script("return arguments[0].duration", audio) > 0
    status, ctype = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {cache: 'no-store'}).then(r => done([r.status, r.headers.get('content-type')]))"
        ".catch(e => done([0, String(e)]));", src)
    assert status == 200 and ctype.startswith("audio/")
    shot = Path(os.environ.get("AUDIORET_SCREENSHOT", tmp_path / "page.png"))
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    # an empty query says so on the page instead of searching
    box.clear()
    box.send_keys(Keys.ENTER)
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "Type what you want to hear"))
