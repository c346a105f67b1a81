"""The screenshot of ``enet serve``'s page in docs/serving.md: the shipped CamVid model on a
real CamVid test frame, drawn by headless Chromium (Debian's chromium and chromium-driver).

    python scripts/screenshot_page.py [--frame FRAME.png] [--out docs/images/serve-page.png]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from enet.fileio import write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENET_SHARED", ROOT.parent / "shared"))
FRAME = SHARED / "data" / "camvid_sample" / "test" / "0001TP_008550.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame", type=Path, default=FRAME)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "serve-page.png")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "enet", "serve", "camvid", "--port", str(port)]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,900"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            browser.get(url + "/")
            browser.find_element(By.ID, "file").send_keys(str(args.frame.resolve()))
            view = browser.find_element(By.ID, "view")
            WebDriverWait(browser, 30).until(lambda _: view.get_attribute("data-frames") == "1")
            write_bytes_atomic(args.out, browser.get_screenshot_as_png())
        finally:
            browser.quit()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
