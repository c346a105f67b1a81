"""Procedural street scenes in the exact Cityscapes layout: the embedded default dataset.

Each frame is a pinhole view of a street (road with lane markings, sidewalks, facades with
windows, walls, fences, grass, trees, poles with signs and lights, cars, trucks, buses, a
tram, motorcycles, bicycles, pedestrians and riders), drawn far to near so that objects
occlude each other. Colours vary per instance and overlap between classes (grey road, grey
walls, grey buildings, grey poles), so telling classes apart takes shape, texture (windows,
tiles, leaves, markings) and context (what stands on what). Lighting, colour casts, shadows
and sensor noise vary per frame. Labels are real Cityscapes label ids, void ones included
(ego vehicle, out of roi, static, ground, parking, rail track), so ``prepare`` maps them
exactly as it maps real Cityscapes.

Deterministic: a frame depends only on (seed, split, index).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import UsageError
from ..fileio import write_bytes_atomic, write_json_atomic
from ..folders import locked_folder
from ..images import MAX_IMAGE_PIXELS
from .cityscapes import LABELS
from .parallel import run_parallel

__all__ = ["CITIES", "draw_scene", "synthesize"]

#: City folder per split (Cityscapes names frames ``<city>_<seq>_<frame>``).
CITIES = {"train": "synthtown", "val": "synthcity", "test": "synthburg"}

# The Cityscapes label ids the scenes are drawn with, by their names in the official table.
_ID = {lb.name: lb.id for lb in LABELS}
EGO, OUT_OF_ROI, STATIC, GROUND = (
    _ID[n] for n in ("ego vehicle", "out of roi", "static", "ground")
)
ROAD, SIDEWALK, PARKING, RAIL = (_ID[n] for n in ("road", "sidewalk", "parking", "rail track"))
BUILDING, WALL, FENCE, POLE = (_ID[n] for n in ("building", "wall", "fence", "pole"))
LIGHT, SIGN, VEGETATION, TERRAIN = (
    _ID[n] for n in ("traffic light", "traffic sign", "vegetation", "terrain")
)
SKY, PERSON, RIDER, CAR, TRUCK = (_ID[n] for n in ("sky", "person", "rider", "car", "truck"))
BUS, TRAIN, MOTORCYCLE, BICYCLE = (_ID[n] for n in ("bus", "train", "motorcycle", "bicycle"))

Color = tuple[int, int, int]

#: Street objects per frame: kind -> (count from, count below, nearest depth beyond the bottom
#: row's, farthest depth) in metres.
STREET_OBJECTS: dict[str, tuple[int, int, float, float]] = {
    "pole": (3, 7, 3, 45),
    "tree": (1, 5, 3, 60),
    "vehicle": (2, 7, 2, 60),
    "person": (2, 8, 1, 40),
    "two_wheeler": (1, 4, 1, 30),
    "static": (0, 3, 2, 40),
}


@dataclass(frozen=True)
class Camera:
    """Pinhole camera 1.5 m above a flat ground, looking along +Z."""

    width: int
    height: int
    f: float
    cx: float
    horizon: float
    cam_h: float = 1.5

    def p(self, x: float, y: float, z: float) -> tuple[float, float]:
        z = max(z, 0.05)
        return (self.cx + self.f * x / z, self.horizon + self.f * (self.cam_h - y) / z)

    def near_z(self) -> float:
        """Depth of the ground at the bottom image row."""
        return self.f * self.cam_h / max(self.height - self.horizon, 1.0)


class Canvas:
    """Paints the photo and the label image together; ``label=None`` paints texture only."""

    def __init__(self, cam: Camera, rng: np.random.Generator) -> None:
        self.cam, self.rng = cam, rng
        self.image = Image.new("RGB", (cam.width, cam.height))
        self.label = Image.new("L", (cam.width, cam.height))
        self._img, self._lbl = ImageDraw.Draw(self.image), ImageDraw.Draw(self.label)

    def poly(self, points, color: Color, label: int | None) -> None:
        pts = [(float(x), float(y)) for x, y in points]
        self._img.polygon(pts, fill=color)
        if label is not None:
            self._lbl.polygon(pts, fill=label)

    def quad(self, x0, x1, y0, y1, z0, z1, color: Color, label: int | None) -> None:
        """A world rectangle: x0..x1 wide at depths z0..z1, heights y0..y1 (planar if x0 == x1
        (side face), z0 == z1 (front face) or y0 == y1 (ground patch))."""
        p = self.cam.p
        if y0 == y1:
            pts = [p(x0, y0, z0), p(x1, y0, z0), p(x1, y0, z1), p(x0, y0, z1)]
        elif z0 == z1:
            pts = [p(x0, y0, z0), p(x1, y0, z0), p(x1, y1, z0), p(x0, y1, z0)]
        else:
            pts = [p(x0, y0, z0), p(x1, y0, z1), p(x1, y1, z1), p(x0, y1, z0)]
        self.poly(pts, color, label)

    def ellipse(self, cx, cy, rx, ry, color: Color, label: int | None) -> None:
        box = [float(cx - rx), float(cy - ry), float(cx + rx), float(cy + ry)]
        self._img.ellipse(box, fill=color)
        if label is not None:
            self._lbl.ellipse(box, fill=label)

    def line(self, points, color: Color, width: float, label: int | None) -> None:
        pts = [(float(x), float(y)) for x, y in points]
        w = max(1, round(width))
        self._img.line(pts, fill=color, width=w)
        if label is not None:
            self._lbl.line(pts, fill=label, width=w)


def _jitter(rng: np.random.Generator, color: Color, amount: int = 18) -> Color:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)


def _grey(rng: np.random.Generator, low: int, high: int, tint: int = 8) -> Color:
    g = int(rng.integers(low, high))
    return _jitter(rng, (g, g, g), tint)


# --- scene elements --------------------------------------------------------------------------


def _sky(cv: Canvas) -> None:
    rng, cam = cv.rng, cv.cam
    top = [(70, 120, 200), (150, 160, 175), (110, 140, 190), (200, 150, 120)][rng.integers(4)]
    bottom = _jitter(rng, (200, 210, 220), 25)
    rows = int(cam.horizon) + 2
    for y in range(rows):
        a = y / max(rows - 1, 1)
        c = tuple(int(top[i] * (1 - a) + bottom[i] * a) for i in range(3))
        cv._img.line([(0, y), (cam.width, y)], fill=c)
    cv._lbl.rectangle([0, 0, cam.width, rows], fill=SKY)
    for _ in range(rng.integers(0, 5)):  # clouds: texture only
        cx, cy = rng.uniform(0, cam.width), rng.uniform(0, cam.horizon * 0.7)
        rx = rng.uniform(0.05, 0.15) * cam.width
        cv.ellipse(cx, cy, rx, rx * 0.3, _jitter(rng, (235, 235, 240), 10), None)


def _ground(cv: Canvas, street: dict) -> None:
    rng = cv.rng
    zn, zf = 0.5, 400.0
    # Everything beyond the sidewalks starts as terrain or void ground; facades cover most.
    cv.quad(-200, 200, 0, 0, zn, zf, _jitter(rng, (110, 130, 70), 25), TERRAIN)
    for side in (-1, 1):
        x_out = street["outer"][side]
        if rng.random() < 0.25:
            z0 = rng.uniform(5, 30)
            cv.quad(
                x_out,
                x_out + side * rng.uniform(2, 8),
                0,
                0,
                z0,
                z0 + rng.uniform(5, 20),
                _jitter(rng, (120, 100, 80)),
                GROUND,
            )
    road_c = _grey(rng, 60, 115)
    xl, xr = street["road"]
    cv.quad(xl, xr, 0, 0, zn, zf, road_c, ROAD)
    # Asphalt patches, lane markings (all still road).
    for _ in range(rng.integers(2, 6)):
        x, z = rng.uniform(xl, xr), rng.uniform(6, 60)
        cv.quad(
            x,
            x + rng.uniform(0.5, 2.5),
            0,
            0,
            z,
            z + rng.uniform(1, 6),
            _jitter(rng, road_c, 12),
            None,
        )
    mark = _jitter(rng, (225, 225, 215), 15) if rng.random() < 0.8 else (220, 190, 60)
    for lane_x in street["lanes"]:
        z = rng.uniform(4, 8)
        while z < 150:
            cv.quad(lane_x - 0.08, lane_x + 0.08, 0, 0, z, z + 3, mark, None)
            z += 3 + rng.uniform(5, 8)
    for x in (xl + 0.3, xr - 0.3):
        cv.quad(x - 0.07, x + 0.07, 0, 0, zn, 150, mark, None)
    if street["parking"]:  # a parking bay beside the right curb: ignored in eval
        z0 = rng.uniform(6, 14)
        cv.quad(xr - 2.2, xr, 0, 0, z0, z0 + rng.uniform(8, 20), _grey(rng, 90, 130), PARKING)
    if street["rail"]:
        rx = street["rail"]
        cv.quad(rx - 0.9, rx + 0.9, 0, 0, zn, zf, _grey(rng, 70, 100), RAIL)
        for dx in (-0.72, 0.72):
            cv.quad(rx + dx - 0.05, rx + dx + 0.05, 0, 0, zn, zf, (170, 170, 175), None)
    # Sidewalks with tile joints; kerb stones.
    for side in (-1, 1):
        x_in, x_out = street["road"][(side + 1) // 2], street["outer"][side]
        a, b = sorted((x_in, x_out))
        walk = _jitter(rng, [(170, 165, 160), (185, 150, 140), (150, 150, 155)][rng.integers(3)])
        cv.quad(a, b, 0, 0, zn, zf, walk, SIDEWALK)
        joint = _jitter(rng, tuple(int(c * 0.75) for c in walk), 5)
        z = 2.0
        while z < 80:
            cv.quad(a, b, 0, 0, z, z + 0.06 * z / 5 + 0.05, joint, None)
            z += rng.uniform(1.2, 2.0)
        cv.quad(x_in - 0.1, x_in + 0.1, 0, 0, zn, zf, _grey(rng, 150, 200), None)


def _facade(cv: Canvas, side: int, x: float, z0: float, z1: float) -> None:
    """A building front parallel to the street, with a grid of windows and a door row."""
    rng = cv.rng
    h = rng.uniform(7, 25)
    palette = [(120, 110, 100), (150, 140, 125), (95, 95, 100), (170, 160, 140), (130, 90, 80)]
    wall = _jitter(rng, palette[rng.integers(len(palette))], 20)
    cv.quad(x, x, 0, h, z0, z1, wall, BUILDING)
    glass = _jitter(rng, [(60, 70, 85), (110, 130, 150), (40, 45, 50)][rng.integers(3)], 15)
    floors, floor_h = int(h / 3.2), 3.2
    cols = max(1, int((z1 - z0) / rng.uniform(2.0, 3.5)))
    for f in range(1, floors):
        for c in range(cols):
            za = z0 + (c + 0.25) * (z1 - z0) / cols
            zb = za + 0.5 * (z1 - z0) / cols
            y = f * floor_h + 0.6
            cv.quad(x, x, y, y + 1.5, za, zb, glass, None)
    if rng.random() < 0.6:  # a front wall of another building's colour: still building
        cv.quad(x, x, h, h + rng.uniform(0.5, 1.5), z0, z1, _jitter(rng, wall, 30), BUILDING)


def _far_skyline(cv: Canvas) -> None:
    rng = cv.rng
    z = rng.uniform(90, 160)
    x = -120.0
    while x < 120:
        w, h = rng.uniform(8, 25), rng.uniform(6, 35)
        if rng.random() < 0.25:
            cv.ellipse(
                *cv.cam.p(x + w / 2, h / 3, z),
                cv.cam.f * w / z / 2,
                cv.cam.f * h / z / 3,
                _jitter(rng, (70, 100, 50), 20),
                VEGETATION,
            )
        else:
            cv.quad(x, x + w, 0, h, z, z, _jitter(rng, (140, 140, 145), 35), BUILDING)
        x += w


def _wall(cv: Canvas, side: int, x: float, z0: float, z1: float) -> None:
    """A free-standing wall: stone, brick or concrete with courses of mortar, coping on top."""
    rng = cv.rng
    h = rng.uniform(1.0, 2.5)
    c = _jitter(rng, [(150, 150, 145), (165, 95, 75), (185, 175, 150)][rng.integers(3)], 20)
    cv.quad(x, x, 0, h, z0, z1, c, WALL)
    mortar = _jitter(rng, tuple(int(v * 0.7) for v in c), 8)
    for y in np.arange(0.25, h - 0.2, rng.uniform(0.2, 0.35)):
        cv.quad(x, x, y, y + 0.04, z0, z1, mortar, None)
    cv.quad(x, x, h - 0.15, h, z0, z1, _jitter(rng, c, 35), WALL)  # coping stones


def _fence(cv: Canvas, side: int, x: float, z0: float, z1: float) -> None:
    rng = cv.rng
    h = rng.uniform(1.0, 2.0)
    c = _jitter(rng, [(140, 120, 100), (90, 95, 90), (170, 160, 150)][rng.integers(3)], 15)
    cam = cv.cam
    # Annotated as one region (as Cityscapes annotators do); drawn as slats over a darker
    # see-through backing, so only its texture tells it from a wall.
    cv.quad(x, x, 0, h, z0, z1, _jitter(rng, tuple(v // 2 for v in c), 10), FENCE)
    step = rng.uniform(0.15, 0.3)
    z = z0
    while z < z1:
        (xa, ya), (_, yb) = cam.p(x, 0, z), cam.p(x, h, z)
        cv.line([(xa, ya), (xa, yb)], c, max(1.0, cam.f * 0.06 / z), None)
        z += step
    for y in (h * 0.3, h * 0.9):
        cv.line([cam.p(x, y, z0), cam.p(x, y, z1)], c, max(1.0, cam.f * 0.05 / z0), None)


def _tree(cv: Canvas, x: float, z: float) -> None:
    rng, cam = cv.rng, cv.cam
    h = rng.uniform(4, 10)
    trunk = _jitter(rng, (90, 70, 50), 15)
    (bx, by), (_, ty) = cam.p(x, 0, z), cam.p(x, h * 0.6, z)
    cv.line([(bx, by), (bx, ty)], trunk, cam.f * 0.3 / z, VEGETATION)
    cx, cy = cam.p(x, h * 0.7, z)
    rx, ry = cam.f * rng.uniform(1.5, 3) / z, cam.f * h * 0.3 / z
    base = _jitter(rng, (60, 110, 45), 25)
    cv.ellipse(cx, cy, rx, ry, base, VEGETATION)
    for _ in range(int(30 + rx * ry / 6)):  # leaves: light/dark speckle, texture only
        a, r = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.9))
        px, py = cx + r * rx * np.cos(a), cy + r * ry * np.sin(a)
        s = max(0.6, rx * 0.08)
        cv.ellipse(px, py, s, s, _jitter(rng, base, 40), None)


def _hedge(cv: Canvas, x: float, z0: float, z1: float) -> None:
    rng = cv.rng
    h = rng.uniform(0.8, 1.8)
    base = _jitter(rng, (50, 100, 40), 20)
    cv.quad(x, x, 0, h, z0, z1, base, VEGETATION)
    for _ in range(60):
        z, y = rng.uniform(z0, z1), rng.uniform(0, h)
        px, py = cv.cam.p(x, y, z)
        s = max(0.6, cv.cam.f * 0.12 / z)
        cv.ellipse(px, py, s, s, _jitter(rng, base, 40), None)


def _pole(cv: Canvas, x: float, z: float, kind: str) -> None:
    rng, cam = cv.rng, cv.cam
    h = rng.uniform(3.5, 7)
    c = _grey(rng, 80, 170)
    (bx, by), (_, ty) = cam.p(x, 0, z), cam.p(x, h, z)
    cv.line([(bx, by), (bx, ty)], c, max(1.0, cam.f * 0.3 / z), POLE)
    if kind == "sign":
        y = h - rng.uniform(0.3, 1.5)
        sx, sy = cam.p(x, y, z)
        r = cam.f * rng.uniform(0.5, 0.8) / z
        fill = [(220, 200, 30), (230, 230, 230), (30, 80, 180), (200, 40, 40)][rng.integers(4)]
        if rng.random() < 0.5:
            cv.ellipse(sx, sy, r, r, _jitter(rng, fill, 15), SIGN)
            cv.ellipse(sx, sy, r * 0.6, r * 0.6, _jitter(rng, (240, 240, 240), 10), None)
        else:
            cv.poly(
                [(sx - r, sy - r), (sx + r, sy - r), (sx + r, sy + r), (sx - r, sy + r)],
                _jitter(rng, fill, 15),
                SIGN,
            )
            cv.poly(
                [
                    (sx - r * 0.6, sy - r * 0.1),
                    (sx + r * 0.6, sy - r * 0.1),
                    (sx + r * 0.6, sy + r * 0.1),
                    (sx - r * 0.6, sy + r * 0.1),
                ],
                (30, 30, 30),
                None,
            )
    elif kind == "light":
        y = h - 0.2
        lx, ly = cam.p(x, y, z)
        w, hh = cam.f * 0.4 / z, cam.f * 0.95 / z
        cv.poly(
            [(lx - w, ly - hh), (lx + w, ly - hh), (lx + w, ly + hh), (lx - w, ly + hh)],
            _jitter(rng, (35, 35, 30), 10),
            LIGHT,
        )
        on = rng.integers(3)
        for i, col in enumerate([(230, 40, 30), (240, 170, 20), (40, 200, 80)]):
            lamp = col if i == on else tuple(c // 4 for c in col)
            cv.ellipse(lx, ly - hh * 0.6 + i * hh * 0.6, w * 0.6, w * 0.6, lamp, None)


def _vehicle(cv: Canvas, x: float, z: float, kind: str) -> None:
    """Rear view of a vehicle on the road (the tram gets a side face as well)."""
    rng, cam = cv.rng, cv.cam
    dims = {"car": (1.8, 1.5), "truck": (2.5, 3.4), "bus": (2.55, 3.1), "train": (2.6, 3.6)}
    w, h = dims[kind]
    w *= rng.uniform(0.9, 1.1)
    label = {"car": CAR, "truck": TRUCK, "bus": BUS, "train": TRAIN}[kind]
    colors = {
        "car": [
            (180, 20, 20),
            (20, 40, 120),
            (200, 200, 200),
            (30, 30, 30),
            (90, 90, 95),
            (230, 230, 235),
            (40, 90, 60),
        ],
        "truck": [(220, 220, 220), (200, 120, 30), (60, 60, 140), (120, 30, 30)],
        "bus": [(220, 200, 40), (200, 30, 30), (240, 240, 240), (30, 110, 170)],
        "train": [(230, 230, 225), (190, 30, 40), (40, 120, 160)],
    }[kind]
    body = _jitter(rng, colors[rng.integers(len(colors))], 15)
    if kind == "train":  # long side face receding along the rails
        side = x - w / 2 if x > 0 else x + w / 2
        length = rng.uniform(15, 30)
        cv.quad(side, side, 0.3, h, z, z + length, _jitter(rng, body, 10), label)
        for i in range(int(length / 2.2)):
            za = z + 0.5 + i * 2.2
            cv.quad(side, side, 1.4, 2.6, za, za + 1.4, (60, 70, 80), None)
    x0, x1 = x - w / 2, x + w / 2
    if kind == "car":
        cv.quad(x0, x1, 0.25, 0.9, z, z, body, label)
        cv.quad(x0 + 0.2, x1 - 0.2, 0.9, h, z, z, body, label)
        cv.quad(x0 + 0.3, x1 - 0.3, 1.0, h - 0.1, z, z, _jitter(rng, (50, 60, 70), 15), None)
        for lx in (x0 + 0.15, x1 - 0.45):
            cv.quad(lx, lx + 0.3, 0.65, 0.8, z, z, (200, 30, 30), None)
    elif kind == "truck":
        cv.quad(x0, x1, 0.5, h, z, z, body, label)
        cv.quad(x0 + 0.1, x1 - 0.1, 0.6, h - 0.1, z, z, _jitter(rng, body, 25), None)
        for i in range(1, 4):
            xs = x0 + i * w / 4
            cv.quad(xs - 0.03, xs + 0.03, 0.6, h - 0.1, z, z, _jitter(rng, body, 40), None)
    elif kind == "bus":  # rear: engine grille low, a destination band, a narrow window
        cv.quad(x0, x1, 0.3, h, z, z, body, label)
        cv.quad(x0 + 0.15, x1 - 0.15, 2.0, h - 0.5, z, z, _jitter(rng, (40, 55, 65), 10), None)
        cv.quad(x0 + 0.3, x1 - 0.3, h - 0.45, h - 0.15, z, z, (250, 160, 30), None)
        cv.quad(x0 + 0.2, x1 - 0.2, 0.5, 1.0, z, z, (50, 50, 50), None)
    else:  # tram front: a rounded cab with a tall windscreen and two lamps
        cx, cy = cam.p(x, h - 0.6, z)
        cv.ellipse(cx, cy, cam.f * w / 2 / z, cam.f * 0.9 / z, body, label)
        cv.quad(x0, x1, 0.3, h - 0.6, z, z, body, label)
        cv.quad(x0 + 0.25, x1 - 0.25, 1.2, h - 0.4, z, z, _jitter(rng, (60, 80, 95), 10), None)
        for lx in (x0 + 0.3, x1 - 0.5):
            cv.quad(lx, lx + 0.2, 0.6, 0.8, z, z, (255, 250, 210), None)
    for wx in (x0 + 0.15, x1 - 0.55):  # wheels belong to the vehicle
        if kind != "train":
            cv.quad(wx, wx + 0.4, 0.0, 0.35, z, z, (20, 20, 20), label)
    shadow = tuple(int(c * 0.3) for c in (60, 60, 60))
    cv.quad(x0, x1, 0.0, 0.0, z - 0.05, z + 1.5, shadow, None)


def _person(cv: Canvas, x: float, z: float, label: int = PERSON, y0: float = 0.0) -> None:
    rng, cam = cv.rng, cv.cam
    h = rng.uniform(1.55, 1.95) * (0.62 if label == RIDER else 1.0)
    shirt = _jitter(
        rng,
        [
            (200, 40, 40),
            (40, 60, 150),
            (230, 230, 230),
            (30, 30, 30),
            (60, 130, 60),
            (220, 180, 60),
        ][rng.integers(6)],
        20,
    )
    trousers = _jitter(rng, [(40, 40, 60), (20, 20, 20), (110, 90, 70)][rng.integers(3)], 15)
    skin = _jitter(rng, [(230, 190, 160), (180, 130, 100), (110, 80, 60)][rng.integers(3)], 10)
    w = 0.45
    if label != RIDER:  # legs
        cv.quad(x - w / 2, x - 0.03, y0, y0 + h * 0.47, z, z, trousers, label)
        cv.quad(x + 0.03, x + w / 2, y0, y0 + h * 0.47, z, z, trousers, label)
        torso0 = y0 + h * 0.45
    else:
        torso0 = y0
    cv.quad(x - w / 2 - 0.05, x + w / 2 + 0.05, torso0, y0 + h * 0.85, z, z, shirt, label)
    hx, hy = cam.p(x, y0 + h * 0.92, z)
    r = cam.f * 0.12 / z
    cv.ellipse(hx, hy, r, r * 1.2, skin, label)


def _two_wheeler(cv: Canvas, x: float, z: float, motor: bool, ridden: bool) -> None:
    """Side view of a bicycle or motorcycle standing across the line of sight."""
    rng, cam = cv.rng, cv.cam
    label = MOTORCYCLE if motor else BICYCLE
    length = 1.9 if motor else 1.7
    r = 0.32 if motor else 0.34
    frame = _jitter(
        rng, [(30, 30, 30), (180, 30, 30), (30, 60, 160), (200, 200, 200)][rng.integers(4)], 15
    )
    (ax, ay), (bx, _) = cam.p(x - length / 2, r, z), cam.p(x + length / 2, r, z)
    rr = cam.f * r / z
    thick = max(1.0, cam.f * (0.16 if motor else 0.12) / z)
    for cx in (ax, bx):  # a wheel is labelled as a whole disc
        box = [cx - rr, ay - rr, cx + rr, ay + rr]
        if motor:  # fat black tyre round a metal hub
            cv._img.ellipse(box, fill=(20, 20, 20))
            cv.ellipse(cx, ay, rr * 0.45, rr * 0.45, _jitter(rng, (170, 170, 175), 20), None)
        else:  # thin tyre; the background shows between the spokes
            cv._img.ellipse(box, outline=(25, 25, 25), width=round(thick))
            for a in np.linspace(0, np.pi, 4, endpoint=False):
                dx, dy = rr * np.cos(a), rr * np.sin(a)
                cv.line([(cx - dx, ay - dy), (cx + dx, ay + dy)], (90, 90, 90), 1, None)
        cv._lbl.ellipse(box, fill=label)
    top = cam.p(x, r * 2.2, z)
    cv.line([(ax, ay), top, (bx, ay), (ax, ay)], frame, thick, label)
    if motor:  # engine, tank and fairing: a solid coloured body between the wheels
        body = _jitter(
            rng, [(200, 30, 30), (20, 20, 20), (230, 140, 20), (40, 60, 160)][rng.integers(4)], 15
        )
        cv.quad(x - 0.6, x + 0.5, r * 0.6, r * 2.6, z, z, body, label)
        cv.quad(x - 0.2, x + 0.2, r * 0.7, r * 1.5, z, z, (90, 90, 95), None)
    if ridden:
        _person(cv, x - 0.1, z - 0.05, RIDER, y0=r * (2.6 if motor else 2.2))


def _ego_and_border(cv: Canvas) -> None:
    rng, cam = cv.rng, cv.cam
    if rng.random() < 0.5:  # the car's own bonnet at the bottom: ego vehicle (void)
        h = cam.height * rng.uniform(0.06, 0.12)
        hood = _jitter(rng, (40, 40, 45), 10)
        cv.ellipse(cam.width / 2, cam.height + h * 0.4, cam.width * 0.7, h * 1.4, hood, EGO)
    if rng.random() < 0.3:  # rectification border / out of roi at the image edges
        b = max(1, int(cam.width * rng.uniform(0.005, 0.02)))
        for box in ([0, 0, b, cam.height], [cam.width - b, 0, cam.width, cam.height]):
            cv._img.rectangle(box, fill=(0, 0, 0))
            cv._lbl.rectangle(box, fill=OUT_OF_ROI)


def _photometric(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Lighting and sensor: gain, colour cast, gamma, a soft shadow band, blur and noise."""
    a = np.asarray(image, dtype=np.float32) / 255.0
    h, w = a.shape[:2]
    cast = rng.uniform(0.85, 1.15, size=3)
    a = np.clip(a * cast * rng.uniform(0.6, 1.3), 0, 1) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.6:  # a building's shadow across the lower half
        x0 = rng.uniform(0, w)
        cols = np.arange(w)[None, :]
        rows = np.arange(h)[:, None]
        edge = x0 + (rows - h) * rng.uniform(-1.5, 1.5)
        mask = (cols < edge) if rng.random() < 0.5 else (cols > edge)
        mask &= rows > h * 0.45
        a = np.where(mask[..., None], a * rng.uniform(0.45, 0.75), a)
    ramp = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.9, 1.15), w, dtype=np.float32)
    a *= ramp[None, :, None]
    a += rng.normal(0, rng.uniform(0.01, 0.04), size=a.shape).astype(np.float32)
    out = Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))


def draw_scene(
    width: int, height: int, rng: np.random.Generator
) -> tuple[Image.Image, Image.Image]:
    """One frame: (RGB image, ``L`` image of Cityscapes label ids)."""
    cam = Camera(
        width,
        height,
        f=0.9 * width,
        cx=width * rng.uniform(0.42, 0.58),
        horizon=height * rng.uniform(0.36, 0.48),
    )
    cv = Canvas(cam, rng)
    lanes = int(rng.integers(2, 5))
    lane_w = rng.uniform(3.0, 3.6)
    xl = -rng.uniform(0.4, lanes - 0.6) * lane_w
    xr = xl + lanes * lane_w
    walk = (rng.uniform(2.0, 4.5), rng.uniform(2.0, 4.5))
    street = {
        "road": (xl, xr),
        "outer": {-1: xl - walk[0], 1: xr + walk[1]},
        "lanes": [xl + i * lane_w for i in range(1, lanes)],
        "parking": rng.random() < 0.3,
        "rail": (xl + lane_w * (0.5 + rng.integers(lanes))) if rng.random() < 0.5 else None,
    }
    _sky(cv)
    _far_skyline(cv)
    _ground(cv, street)

    # Street sides, far to near: facades with walls, fences, hedges or grass in the gaps.
    side_items = []
    for side in (-1, 1):
        x = street["outer"][side]
        z = rng.uniform(5, 12)
        while z < 120:
            length = rng.uniform(8, 30)
            kind = rng.choice(["facade", "facade", "wall", "fence", "hedge", "gap"])
            setback = side * rng.uniform(0, 4) if kind != "facade" else side * rng.uniform(0, 1)
            side_items.append((z + length, kind, side, x + setback, z, z + length))
            z += length + (rng.uniform(0, 6) if rng.random() < 0.4 else 0)
    for _, kind, side, x, z0, z1 in sorted(side_items, reverse=True):
        if kind == "facade":
            _facade(cv, side, x, z0, z1)
        elif kind == "wall":
            _wall(cv, side, x, z0, z1)
        elif kind == "fence":
            _fence(cv, side, x, z0, z1)
        elif kind == "hedge":
            _hedge(cv, x, z0, z1)

    # Objects on the street, sorted far to near so nearer ones occlude.
    near = cam.near_z()
    objects = [
        (rng.uniform(near + first, last), kind)
        for kind, (low, high, first, last) in STREET_OBJECTS.items()
        for _ in range(rng.integers(low, high))
    ]
    if street["rail"] is not None and rng.random() < 0.85:
        objects.append((rng.uniform(near + 8, 45), "train"))

    vehicle_kinds = ["car"] * 4 + ["truck", "bus"]
    for z, kind in sorted(objects, key=lambda o: -o[0]):
        side = -1 if rng.random() < 0.5 else 1
        kerb = street["road"][(side + 1) // 2]
        if kind in ("pole", "tree"):
            x = kerb + side * rng.uniform(0.4, 1.0)
            if kind == "tree":
                _tree(cv, x, z)
            else:
                _pole(cv, x, z, ["sign", "light", "plain", "sign", "light"][rng.integers(5)])
        elif kind == "vehicle":
            lane = rng.integers(lanes)
            x = xl + (lane + 0.5) * lane_w + rng.uniform(-0.3, 0.3)
            _vehicle(cv, x, z, vehicle_kinds[rng.integers(len(vehicle_kinds))])
        elif kind == "train":
            _vehicle(cv, street["rail"], z, "train")
        elif kind == "person":
            a, b = sorted((kerb, street["outer"][side]))
            _person(cv, rng.uniform(a + 0.3, b - 0.3), z)
        elif kind == "two_wheeler":
            motor = rng.random() < 0.45
            on_road = motor or rng.random() < 0.5
            if on_road:
                x = xl + rng.uniform(0.3, lanes - 0.3) * lane_w
            else:
                a, b = sorted((kerb, street["outer"][side]))
                x = rng.uniform(a + 0.8, b - 0.8) if b - a > 1.8 else (a + b) / 2
            _two_wheeler(cv, x, z, motor, ridden=on_road or rng.random() < 0.3)
        elif kind == "static":  # bins and boxes on the sidewalk: void "static"
            a, b = sorted((kerb, street["outer"][side]))
            x = rng.uniform(a, b)
            cv.quad(x, x + 0.6, 0, rng.uniform(0.6, 1.1), z, z, _grey(rng, 40, 120), STATIC)
    _ego_and_border(cv)
    return _photometric(cv.image, rng), cv.label


def _frame_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, sorted(CITIES).index(split), index])


def _png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _write_frame(job: tuple) -> None:
    out, split, index, size, seed = job
    city = CITIES[split]
    stem = f"{city}_{index:06d}_000019"
    image, label = draw_scene(*size, _frame_rng(seed, split, index))
    image_path = out / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
    label_path = out / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
    write_bytes_atomic(label_path, _png(label))
    write_bytes_atomic(image_path, _png(image, compress_level=1))  # last: marks the frame done


def _drawn_by_synth(folder: Path) -> bool:
    """An output of enet synth from before folders were marked: the layout's two trees of
    synthetic cities and nothing else."""
    names = {p.name for p in folder.iterdir()} - {".enet.json", ".enet.lock"}
    cities = {p.name for tree in ("leftImg8bit", "gtFine") for p in (folder / tree).glob("*/*")}
    return names == {"leftImg8bit", "gtFine"} and cities <= set(CITIES.values())


def synthesize(
    out: str | Path,
    *,
    train: int = 60,
    val: int = 20,
    size: tuple[int, int] = (512, 256),
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write ``train`` + ``val`` frames of ``size`` (width, height) in the Cityscapes layout.

    Frames already on disk are kept (each is written atomically), so a rerun finishes an
    interrupted one or adds frames; a rerun with another seed or size, or fewer frames, is
    refused, since the folder would then hold another set than the one asked for.
    """
    out = Path(out)
    if train + val == 0:
        raise UsageError(f"{out}: asked for no frames (give --train or --val above 0)")
    if size[0] * size[1] > MAX_IMAGE_PIXELS or min(size) < 1:
        raise UsageError(
            f"--size {size[0]}x{size[1]}: frames must have 1 to {MAX_IMAGE_PIXELS:,} pixels"
        )
    with locked_folder(out, "synth", claim=True, recognise=_drawn_by_synth):
        settings = {"seed": seed, "size": list(size)}
        recorded = out / "synth.json"
        if recorded.is_file():
            before = json.loads(recorded.read_text())
            if before != settings:
                raise UsageError(
                    f"{out}: holds frames drawn with seed {before.get('seed')} at "
                    f"{'x'.join(map(str, before.get('size', [])))}, not seed {seed} at "
                    f"{size[0]}x{size[1]} (choose another --out)"
                )
        else:
            write_json_atomic(recorded, settings)
        jobs = []
        for split, count in (("train", train), ("val", val)):
            held = len(list((out / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")))
            if held > count:
                raise UsageError(
                    f"{out}: holds {held} {split} frames, more than the {count} asked for "
                    f"(ask for {held} or more, or choose another --out)"
                )
            for i in range(count):
                stem = f"{CITIES[split]}_{i:06d}_000019"
                image = out / "leftImg8bit" / split / CITIES[split] / f"{stem}_leftImg8bit.png"
                if not image.is_file():
                    jobs.append((out, split, i, tuple(size), seed))
        workers = workers or os.cpu_count() or 1
        for _ in run_parallel(_write_frame, jobs, workers, desc="synth", progress=progress):
            pass
    return out
