"""The page of ``enet serve`` in a real browser (headless Chromium driven by Selenium), against
the real server in its own process: the legend lists the model's classes; an uploaded frame
is drawn with its class colours over it, pixel for pixel what ``POST /v1/segment`` answers,
and the opacity slider redraws it without a new request; the live camera (Chromium's fake
one, playing a .y4m file) sends frame after frame over the WebSocket until Stop; a video file
is segmented the same way, played hidden; a server with a token asks for it before anything.
The browser's console must stay free of errors throughout."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from .conftest import DATA, Server, enet_server, require

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    missing = f"Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}) are missing"
    if os.environ.get("ENET_REQUIRE_BROWSER"):  # CI installs them: never skip there
        raise RuntimeError(f"{missing}; apt-get install chromium chromium-driver")
    pytest.skip(f"the browser test needs them: {missing}", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TOKEN = "s3cret"
ALPHA = 0.5  # the opacity slider's first value, 50
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
)
FAKE_CAMERA_FLAGS = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")


# --- the server --------------------------------------------------------------------------------


@dataclass
class Site:
    """A running ``enet serve camvid`` and the token it wants, if any."""

    server: Server
    token: str | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, *, token: str | None = None) -> bytes:
        return self._answer(httpx.get(self.url + path, headers=_auth(token), timeout=30))

    def post(self, path: str, body: bytes, *, token: str | None = None) -> bytes:
        headers = {"Content-Type": "image/png", **_auth(token)}
        return self._answer(httpx.post(self.url + path, content=body, headers=headers, timeout=30))

    def model(self) -> dict:
        return json.loads(self.get("/v1/model", token=self.token))

    @staticmethod
    def _answer(response: httpx.Response) -> bytes:
        response.raise_for_status()
        return response.content


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Site]]:
    """Two servers: ``open`` (no token) and ``token`` (--token)."""
    logs = tmp_path_factory.mktemp("servers")
    with (
        enet_server(log_path=logs / "open.log") as open_server,
        enet_server("--token", TOKEN, log_path=logs / "token.log") as token_server,
    ):
        yield {"open": Site(open_server), "token": Site(token_server, TOKEN)}


@pytest.fixture(scope="module")
def server(servers: dict[str, Site]) -> Site:
    return servers["open"]


# --- pictures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame_path() -> Path:
    return require(DATA / "camvid_sample" / "test" / "0001TP_008550.png")


def read_rgb(data: bytes | Path) -> np.ndarray:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    return np.asarray(Image.open(source).convert("RGB")).astype(np.int16)


def palette_of(server: Site) -> np.ndarray:
    return np.array([c["color"] for c in server.model()["classes"]], dtype=np.int16)


def class_ids(server: Site, path: Path) -> np.ndarray:
    """The server's class ids for an image file (``answer=ids``: a grey PNG)."""
    answer = server.post("/v1/segment?answer=ids", path.read_bytes(), token=server.token)
    return np.asarray(Image.open(io.BytesIO(answer)))


def blend(frame: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    return np.rint(frame * (1 - alpha) + colours * alpha).astype(np.int16)


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str, *, within: int = 3) -> None:
    """Equal up to the browser's rounding: mean difference under 2, 99% of pixels ``within``."""
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    diff = np.abs(actual.astype(np.int16) - expected).max(axis=-1)
    near = (diff <= within).mean()
    assert diff.mean() < 2 and near >= 0.99, f"{what}: mean diff {diff.mean():.2f}, {near:.1%} near"


def assert_far(actual: np.ndarray, other: np.ndarray, what: str) -> None:
    diff = np.abs(actual.astype(np.int16) - other).mean()
    assert diff > 8, f"{what}: mean difference only {diff:.2f}"


def palette_ids(picture: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class ids of a picture made of palette colours alone (a failure if it is not)."""
    match = (picture[:, :, None, :] == palette[None, None]).all(axis=-1)
    assert match.any(axis=-1).all(), f"{(~match.any(axis=-1)).mean():.1%} not palette colours"
    return match.argmax(axis=-1)


def write_y4m(path: Path, frame: np.ndarray, count: int) -> None:
    """A YUV4MPEG2 clip (4:2:0, BT.601 video range, as Chromium reads it) of ``count`` copies
    of ``frame``: the fake camera's frames are then known, so the page's can be checked."""
    rgb = frame.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape

    def quarter(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in (y, quarter(u), quarter(v))]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(count):
            out.write(b"FRAME\n")
            for plane in planes:
                out.write(plane.tobytes())


def write_webm(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    av = pytest.importorskip("av", reason="writing the test video needs PyAV (enet[video])")
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")
            container.mux(stream.encode(picture))
        container.mux(stream.encode())


# --- the browser -------------------------------------------------------------------------------


def launch_chromium(profile: Path, *extra: str) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory: pytest.TempPathFactory, frame_path: Path) -> Path:
    clip = tmp_path_factory.mktemp("camera") / "street.y4m"
    write_y4m(clip, read_rgb(frame_path), count=30)
    return clip


@pytest.fixture
def browser(tmp_path: Path, camera_clip: Path) -> Iterator[WebDriver]:
    """Chromium with a fake camera playing ``camera_clip``; afterwards, its console must hold
    no error but those a test expects (``browser.expected_errors``: patterns)."""
    driver = launch_chromium(
        tmp_path / "profile", *FAKE_CAMERA_FLAGS, f"--use-file-for-fake-video-capture={camera_clip}"
    )
    driver.expected_errors = []
    try:
        yield driver
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        unexpected = [m for m in errors if not any(re.search(p, m) for p in driver.expected_errors)]
        assert not unexpected, f"errors in the browser's console: {unexpected}"
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[], object], what: str, timeout: float = 20):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda _: condition())
    except TimeoutException:
        message = driver.find_element(By.ID, "message").text
        raise AssertionError(f"timed out waiting for {what} (the page says: {message!r})") from None


def frames_shown(driver: WebDriver) -> int:
    return int(driver.find_element(By.ID, "view").get_attribute("data-frames"))


def wait_frames(driver: WebDriver, at_least: int, timeout: float = 20) -> int:
    wait_for(driver, lambda: frames_shown(driver) >= at_least, f"{at_least} frames", timeout)
    return frames_shown(driver)


def legend(driver: WebDriver) -> list[tuple[str, str]]:
    """(name, share) of each legend row."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#legend li")
    return [
        (
            row.find_element(By.CLASS_NAME, "name").text,
            row.find_element(By.CLASS_NAME, "share").text,
        )
        for row in rows
    ]


def wait_legend(driver: WebDriver, count: int) -> list[tuple[str, str]]:
    wait_for(driver, lambda: len(legend(driver)) == count, f"a legend of {count} classes")
    return legend(driver)


def canvas_pixels(driver: WebDriver) -> np.ndarray:
    url = driver.execute_script("return document.getElementById('view').toDataURL('image/png')")
    return read_rgb(base64.b64decode(url.split(",", 1)[1]))


def set_opacity(driver: WebDriver, percent: int) -> None:
    driver.execute_script(
        "const s = document.getElementById('opacity'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input'));",
        percent,
    )


def upload(driver: WebDriver, path: Path) -> None:
    driver.find_element(By.ID, "file").send_keys(str(path))


def frames_per_second(driver: WebDriver) -> float:
    stats = driver.find_element(By.ID, "stats").text
    found = re.search(r"([\d.]+) frames/s", stats)
    assert found, f"no frames/s in the stats: {stats!r}"
    return float(found.group(1))


def assert_frames_stop(driver: WebDriver) -> None:
    """After Stop, no further frame comes (one round trip here is ~0.1-0.3 s)."""
    stopped = frames_shown(driver)
    time.sleep(1.0)
    assert frames_shown(driver) == stopped, "frames kept coming after Stop"
    assert not driver.find_element(By.ID, "stop").is_enabled()


def assert_live_frames(driver: WebDriver, palette: np.ndarray) -> None:
    """Live frames come one after another, with a frames/s figure, each a frame with the
    palette's colours over it."""
    first = wait_frames(driver, 3)
    assert frames_per_second(driver) > 0
    assert driver.find_element(By.ID, "message").text == ""
    wait_frames(driver, first + 2)  # still coming
    set_opacity(driver, 100)  # the class colours alone
    assert canvas_pixels(driver).max() > 0, "the canvas is black"
    palette_ids(canvas_pixels(driver), palette)
    set_opacity(driver, 50)


# --- the tests ---------------------------------------------------------------------------------


def test_legend_lists_the_models_classes(browser: WebDriver, server: Site) -> None:
    names = [c["name"] for c in server.model()["classes"]]
    assert len(names) == 12
    browser.get(server.url + "/")
    assert [name for name, _ in wait_legend(browser, 12)] == names
    assert "12 classes" in browser.find_element(By.ID, "model").text
    assert not browser.find_element(By.ID, "token-box").is_displayed()
    assert frames_shown(browser) == 0


def test_upload_draws_the_servers_colours_over_the_frame(
    browser: WebDriver, server: Site, frame_path: Path
) -> None:
    frame = read_rgb(frame_path)
    palette = palette_of(server)
    ids = class_ids(server, frame_path)
    shares = json.loads(server.post("/v1/segment?answer=json", frame_path.read_bytes()))["shares"]

    browser.get(server.url + "/")
    wait_legend(browser, 12)
    upload(browser, frame_path)
    wait_frames(browser, 1)
    expected = blend(frame, palette[ids], ALPHA)
    shown = canvas_pixels(browser)
    assert_close(shown, expected, "the overlay at opacity 50")
    assert_far(shown, frame, "the overlay against the plain frame")
    assert legend(browser) == [(n, f"{100 * s:.1f}%") for n, s in shares.items()]
    assert re.search(r"480x360 · model [\d.]+ ms", browser.find_element(By.ID, "stats").text)

    set_opacity(browser, 0)
    assert_close(canvas_pixels(browser), frame, "the canvas at opacity 0")
    set_opacity(browser, 100)
    assert_close(canvas_pixels(browser), palette[ids], "the canvas at opacity 100", within=0)
    time.sleep(0.3)
    assert frames_shown(browser) == 1, "the slider sent the frame again"


def test_live_camera_streams_until_stopped(
    browser: WebDriver, server: Site, frame_path: Path
) -> None:
    frame = read_rgb(frame_path)
    palette = palette_of(server)
    browser.get(server.url + "/")
    wait_legend(browser, 12)
    browser.find_element(By.ID, "camera").click()
    assert_live_frames(browser, palette)
    assert "on" in browser.find_element(By.ID, "camera").get_attribute("class")

    browser.find_element(By.ID, "stop").click()
    assert_frames_stop(browser)
    assert "on" not in browser.find_element(By.ID, "camera").get_attribute("class")
    assert browser.execute_script("return document.getElementById('source').srcObject") is None

    # The camera plays copies of one known frame: its last picture is that frame, coloured
    # as the server colours the frame itself (JPEG and 4:2:0 chroma blur a few edges).
    set_opacity(browser, 100)
    live_ids = palette_ids(canvas_pixels(browser), palette)
    agree = (live_ids == class_ids(server, frame_path)).mean()
    assert agree > 0.9, f"the live frame's classes agree with the frame's at {agree:.1%} only"
    set_opacity(browser, 0)
    camera = canvas_pixels(browser)
    assert_close(camera, frame, "the camera's frame", within=8)
    set_opacity(browser, 50)
    assert_close(canvas_pixels(browser), blend(camera, palette[live_ids], ALPHA), "the overlay")


def test_video_file_is_segmented_frame_by_frame(
    browser: WebDriver, server: Site, frame_path: Path, tmp_path: Path
) -> None:
    clip = tmp_path / "street.webm"
    other = require(DATA / "camvid_sample" / "test" / "Seq05VD_f00000.png")
    write_webm(clip, [read_rgb(frame_path)] * 10 + [read_rgb(other)] * 10)
    browser.get(server.url + "/")
    wait_legend(browser, 12)
    upload(browser, clip)
    assert_live_frames(browser, palette_of(server))
    video = browser.find_element(By.ID, "source")
    assert not video.is_displayed(), "the video shows beside the canvas"
    assert browser.execute_script("const v = document.getElementById('source'); return !v.paused")

    browser.find_element(By.ID, "stop").click()
    assert_frames_stop(browser)
    assert not browser.execute_script("return document.getElementById('source').src")


def test_token_is_asked_for_first(
    browser: WebDriver, servers: dict[str, Site], frame_path: Path
) -> None:
    server = servers["token"]
    # Chromium reports the page's first /v1/model, answered 401, as a failed resource
    browser.expected_errors = [r"/v1/model - Failed to load resource: .* 401"]
    with pytest.raises(httpx.HTTPStatusError, match="401"):
        server.get("/v1/model")
    browser.get(server.url + "/")
    box = browser.find_element(By.ID, "token-box")
    wait_for(browser, box.is_displayed, "the token box")
    assert "token" in browser.find_element(By.ID, "message").text
    assert legend(browser) == []

    browser.find_element(By.ID, "token").send_keys("wrong")
    browser.find_element(By.ID, "token-set").click()
    wait_for(
        browser, lambda: "not the server's" in browser.find_element(By.ID, "message").text, "no"
    )
    assert box.is_displayed() and legend(browser) == []

    field = browser.find_element(By.ID, "token")
    field.clear()
    field.send_keys(TOKEN)
    browser.find_element(By.ID, "token-set").click()
    wait_legend(browser, 12)
    assert not box.is_displayed()
    assert browser.find_element(By.ID, "message").text == ""

    upload(browser, frame_path)
    wait_frames(browser, 1)
    palette = palette_of(server)
    expected = blend(read_rgb(frame_path), palette[class_ids(server, frame_path)], ALPHA)
    assert_close(canvas_pixels(browser), expected, "the overlay through the token")
