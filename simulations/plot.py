"""A scatter plot as a PNG, with nothing but ``zlib`` and ``struct`` (matplotlib is not a
dependency): convergence time after heal against partition length, one dot per seed.

Axes start at zero; grid lines every tenth of the range, values at both ends and the middle.
Title, axis labels and values are drawn with the 5×7 font of :mod:`simulations.glyphs`; the
same caption also goes to the summary text.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from simulations.glyphs import GLYPH_HEIGHT, GLYPH_WIDTH, pixels

WIDTH, HEIGHT = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 56, 620, 58, 370  # the plotting area
TITLE = "convergence after heal by partition length"
X_LABEL = "partition length (virtual s)"
Y_LABEL = "convergence (virtual s)"
WHITE, BLACK, GREY, BLUE = (255, 255, 255), (0, 0, 0), (200, 200, 200), (31, 90, 200)


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(WHITE) * width * height)

    def set(self, x: int, y: int, color: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = 3 * (y * self.width + x)
            self.pixels[i : i + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for s in range(steps + 1):
            self.set(x0 + (x1 - x0) * s // steps, y0 + (y1 - y0) * s // steps, color)

    def dot(self, x: int, y: int, color: tuple[int, int, int], radius: int = 2) -> None:
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if dx * dx + dy * dy <= radius * radius:
                    self.set(x + dx, y + dy, color)

    def text(self, x: int, y: int, text: str, color: tuple[int, int, int], scale: int = 1) -> None:
        """``text`` with its top-left corner at (x, y), one pixel between characters."""
        for i, char in enumerate(text):
            left = x + i * (GLYPH_WIDTH + 1) * scale
            for gx, gy in pixels(char):
                for dy in range(scale):
                    for dx in range(scale):
                        self.set(left + gx * scale + dx, y + gy * scale + dy, color)

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.pixels[3 * y * self.width : 3 * (y + 1) * self.width])
            for y in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b"")
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def text_width(text: str, scale: int = 1) -> int:
    return len(text) * (GLYPH_WIDTH + 1) * scale - scale


def _value(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.1f}"


def scatter(points: list[tuple[float, float]]) -> tuple[bytes, str]:
    """The PNG and a caption naming the axes and their ranges."""
    canvas = Canvas(WIDTH, HEIGHT)
    x_max = max((x for x, _ in points), default=1.0) or 1.0
    y_max = max((y for _, y in points), default=1.0) or 1.0
    left, right, top, bottom = LEFT, RIGHT, TOP, BOTTOM
    canvas.text((WIDTH - text_width(TITLE, 2)) // 2, 8, TITLE, BLACK, scale=2)
    canvas.text(left - 4, top - 14, Y_LABEL, BLACK)
    canvas.text((left + right - text_width(X_LABEL)) // 2, bottom + 24, X_LABEL, BLACK)
    for tick in (0, 5, 10):
        x = left + (right - left) * tick // 10
        y = bottom - (bottom - top) * tick // 10
        x_text, y_text = _value(x_max * tick / 10), _value(y_max * tick / 10)
        canvas.text(x - text_width(x_text) // 2, bottom + 9, x_text, BLACK)
        canvas.text(left - 8 - text_width(y_text), y - GLYPH_HEIGHT // 2, y_text, BLACK)
    for tick in range(11):
        x = left + (right - left) * tick // 10
        y = bottom - (bottom - top) * tick // 10
        canvas.line(x, top, x, bottom, GREY)
        canvas.line(left, y, right, y, GREY)
        canvas.line(x, bottom, x, bottom + 5, BLACK)
        canvas.line(left - 5, y, left, y, BLACK)
    canvas.line(left, bottom, right, bottom, BLACK)
    canvas.line(left, top, left, bottom, BLACK)
    for px, py in points:
        x = left + round((right - left) * px / x_max)
        y = bottom - round((bottom - top) * py / y_max)
        canvas.dot(x, y, BLUE)
    caption = (
        f"x: partition length 0..{x_max:.0f} virtual s; y: convergence after heal "
        f"0..{y_max:.1f} virtual s; {len(points)} seeds; grid every tenth"
    )
    return canvas.png(), caption


def write_scatter(path: Path, points: list[tuple[float, float]]) -> str:
    data, caption = scatter(points)
    path.write_bytes(data)
    return caption
