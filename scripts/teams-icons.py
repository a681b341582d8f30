"""Draw the Teams app's two icons (docs/teams/color.png, 192×192, and outline.png, 32×32: white on transparent,
as Teams requires) with the standard library only: a speech bubble. Run once; the PNGs are committed.

    python scripts/teams-icons.py
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

FOLDER = Path(__file__).resolve().parent.parent / "docs" / "teams"
TEAL = (15, 118, 110, 255)
WHITE = (255, 255, 255, 255)
CLEAR = (0, 0, 0, 0)


def _bubble(x: float, y: float) -> bool:
    """A rounded speech bubble in the unit square, with a tail at the bottom left."""
    inside = 0.15 <= x <= 0.85 and 0.2 <= y <= 0.7
    corner = min(abs(x - 0.15), abs(x - 0.85)) < 0.08 and min(abs(y - 0.2), abs(y - 0.7)) < 0.08
    if corner:
        cx = 0.23 if x < 0.5 else 0.77
        cy = 0.28 if y < 0.5 else 0.62
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= 0.08**2 or (0.23 <= x <= 0.77 or 0.28 <= y <= 0.62)
    tail = 0.25 <= x <= 0.4 and 0.7 <= y <= 0.85 and (y - 0.7) <= (0.4 - x)
    return inside or tail


def _png(size: int, pixel: tuple[int, int, int, int], background: tuple[int, int, int, int]) -> bytes:
    rows = b"".join(
        b"\x00"
        + b"".join(bytes(pixel if _bubble((i + 0.5) / size, (j + 0.5) / size) else background) for i in range(size))
        for j in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    (FOLDER / "color.png").write_bytes(_png(192, WHITE, TEAL))
    (FOLDER / "outline.png").write_bytes(_png(32, WHITE, CLEAR))
