"""The explorer in a real headless Chromium (Debian package) driven by Playwright.

Starts ``streamlit run apps/explorer.py`` on a free loopback port, searches an item, waits for
its heatmap, takes screenshots and measures page load and item switch with a warm attribution
cache. The timings are printed (run with ``-s`` to see them) and written to
``<tmp>/explorer-timings.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

APP = Path(__file__).resolve().parents[2] / "apps" / "explorer.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: JS: the heatmap <img> (the st.image whose caption names the colour scale), or null.
HEATMAP_JS = """(() => {
    const figs = [...document.querySelectorAll('[data-testid="stImage"]')].filter(
        f => (f.textContent || "").includes("colour scale"));
    return figs.length ? figs[0].querySelector("img") : null;
})()"""
SCREENSHOT_COPY = Path("/tmp/explorer.png")


def need_chromium() -> None:
    if CHROMIUM.exists():
        return
    msg = (f"{CHROMIUM} is missing; 'make setup' installs it (scripts/install_browser.py: "
           "apt-get install chromium chromium-driver)")
    if os.geteuid() == 0:  # the set-up could have installed it: a real failure
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg + " and this user is not root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"streamlit did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server and its children: its process group, by the PID we started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def heatmap_src(page) -> str | None:
    return page.evaluate(f"(() => {{ const i = {HEATMAP_JS}; return i ? i.src : null; }})()")


def wait_heatmap(page, *, header: str, old_src: str | None, timeout_ms: int = 90_000) -> None:
    """Wait until the page shows ``header`` and a loaded heatmap other than ``old_src``."""
    page.get_by_role("heading", name=header).wait_for(timeout=timeout_ms)
    page.wait_for_function(
        f"""(old) => {{
            const img = {HEATMAP_JS};
            return !!img && img.complete && img.naturalWidth > 0 && !!img.src && img.src !== old;
        }}""", arg=old_src, timeout=timeout_ms)


def wait_idle(page, timeout_ms: int = 90_000) -> None:
    """Wait until Streamlit has finished the script run (its status widget is gone)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)


def download(page, button: str, timeout_ms: int = 90_000) -> Path:
    """Click a download button once the app is idle and return the downloaded file."""
    wait_idle(page)
    with page.expect_download(timeout=timeout_ms) as dl:
        page.get_by_role("button", name=button).click()
    path = Path(dl.value.path())
    wait_idle(page)
    return path


@pytest.mark.browser
def test_explorer_in_chromium(explorer_ws, tmp_path):
    need_chromium()
    from playwright.sync_api import sync_playwright

    from befa_viz.pipeline import explain_item

    # Warm the attribution cache with the app's default request (IG, 16 steps).
    for item in ("i0", "i7", "i2"):
        explain_item(item, workspace=explorer_ws, method="ig", n_steps=16)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "streamlit.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    env.pop("BEFA_VIZ_WORKSPACE", None)  # the --workspace argument must be what is used
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
             "--", "--workspace", str(explorer_ws)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    timings: dict[str, float] = {}
    try:
        wait_healthy(url, proc, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                t0 = time.perf_counter()
                page.goto(url)
                wait_heatmap(page, header="i0 — red box", old_src=None)
                timings["first_page_load_s"] = time.perf_counter() - t0  # includes imports
                wait_idle(page)

                t0 = time.perf_counter()
                page.reload()
                wait_heatmap(page, header="i0 — red box", old_src=None)
                timings["page_load_warm_s"] = time.perf_counter() - t0
                wait_idle(page)

                # Search an item by title: a new item, its maps on disk but not yet in memory.
                search = page.get_by_label("Search items by original id or title")
                for query, header, key in (("blue hat", "i7 — blue hat", "item_switch_s"),
                                           ("i2", "i2 — green cup", "item_switch_2_s"),
                                           ("blue hat", "i7 — blue hat", "item_switch_back_s")):
                    old = heatmap_src(page)
                    search.fill(query)
                    t0 = time.perf_counter()
                    search.press("Enter")
                    wait_heatmap(page, header=header, old_src=old)
                    timings[key] = time.perf_counter() - t0
                    wait_idle(page)
                    timings[key[:-2] + "_idle_s"] = time.perf_counter() - t0
                assert page.locator('[data-testid="stException"]').count() == 0
                shot = tmp_path / "explorer.png"
                page.set_viewport_size({"width": 1400, "height": 2600})  # the app scrolls inside
                wait_idle(page)
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
                # the exports download what they say; a download click reruns the script, so
                # wait for each rerun to finish before the next click
                scores_path = download(page, "Scores (JSON)")
                scores = json.loads(scores_path.read_text())
                assert scores["item_id"] == "i7" and set(scores["scores"]) == {"without", "with"}
                npz_path = download(page, "Arrays (NPZ)")
                with np.load(npz_path, allow_pickle=False) as z:
                    assert {"without", "with", "relevance"} <= set(z.files)
                    assert z["with"].shape == z["without"].shape == (32, 32)
                try:
                    shutil.copyfile(shot, SCREENSHOT_COPY)
                except OSError:  # another user's copy: the tmp_path one is what counts
                    pass
            finally:
                browser.close()
    finally:
        stop(proc)
    assert proc.poll() is not None
    (tmp_path / "explorer-timings.json").write_text(json.dumps(timings, indent=2))
    print("\nexplorer timings (warm attribution cache):",
          ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    assert timings["item_switch_back_s"] < 30  # a loose bound; the report gives the numbers


@pytest.mark.browser
def test_clicking_a_point_in_the_item_space_opens_it_in_chromium(shop_ws, tmp_path):
    """The item-space chart's selection reaches the app: a click on a point opens the item."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    from befa_viz import explore

    # the map is cached in the workspace: the server reads it instead of running UMAP again
    space = explore.item_space(explore.open_run_pair(shop_ws), modality="image",
                               workspace=shop_ws)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "streamlit.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    env.pop("BEFA_VIZ_WORKSPACE", None)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
             "--", "--workspace", str(shop_ws)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_healthy(url, proc, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.goto(url)
                page.get_by_role("heading", level=2).first.wait_for(timeout=90_000)
                wait_idle(page)
                page.locator('[data-testid="stRadio"]').first.get_by_text(
                    "Item space", exact=True).click()
                chart = page.locator('[data-testid="stVegaLiteChart"]').last
                chart.wait_for(timeout=90_000)
                wait_idle(page)
                marks = chart.locator("g.mark-symbol path")
                marks.first.wait_for(timeout=30_000)
                assert marks.count() == len(space)  # one point per item
                marks.nth(3).click(force=True)
                page.wait_for_function(
                    r"""() => [...document.querySelectorAll('h2')].some(
                        h => /^i\d+ — /.test(h.innerText))""", timeout=60_000)
                assert page.locator('[data-testid="stException"]').count() == 0
            finally:
                browser.close()
    finally:
        stop(proc)
