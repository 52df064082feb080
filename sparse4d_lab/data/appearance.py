"""What the synthetic warehouse's bodies look like: the renderer's surface patterns, the colour palettes, and each
target class's size, speed, turn rate and parts (cuboids in unit-box coordinates)."""

from __future__ import annotations

from dataclasses import dataclass

# Pattern ids understood by the renderer.
PLAIN, STRIPES_H, STRIPES_V, SPECKLE = range(4)

Rgb = tuple[float, float, float]
# Palettes overlap on purpose (grey shirts, grey robots, blue bins, blue trousers) so colour alone cannot classify.
GREYS: list[Rgb] = [(0.55, 0.55, 0.57), (0.35, 0.35, 0.37), (0.75, 0.75, 0.78)]
CLOTHES: list[Rgb] = [(0.7, 0.15, 0.15), (0.15, 0.3, 0.7), (0.2, 0.55, 0.25), (0.85, 0.75, 0.2), (0.9, 0.5, 0.1)]
CLOTHES += GREYS
TROUSERS: list[Rgb] = [(0.12, 0.15, 0.3), (0.1, 0.1, 0.1), (0.45, 0.4, 0.3), (0.35, 0.35, 0.37)]
SKIN: list[Rgb] = [(0.95, 0.8, 0.65), (0.8, 0.6, 0.45), (0.55, 0.38, 0.25), (0.35, 0.25, 0.18)]
DARK: list[Rgb] = [(0.08, 0.08, 0.1), (0.2, 0.2, 0.22)]
ROBOT_LIGHT: list[Rgb] = [(0.88, 0.88, 0.9), (0.75, 0.75, 0.78), (0.6, 0.62, 0.66)]
WOOD: list[Rgb] = [(0.6, 0.45, 0.28), (0.5, 0.38, 0.22)]
CARDBOARD: list[Rgb] = [(0.68, 0.52, 0.33), (0.6, 0.45, 0.3)]
BIN: list[Rgb] = [(0.15, 0.3, 0.7), (0.2, 0.55, 0.25), (0.85, 0.75, 0.2), (0.7, 0.15, 0.15), *GREYS]
RACK_FRAME: list[Rgb] = [(0.9, 0.45, 0.1), (0.15, 0.3, 0.65)]


@dataclass(frozen=True)
class ClassSpec:
    """Size (l, w, h) range, speed range (m/s), turn rate (rad/s) and the parts of one target class."""

    size_lo: tuple[float, float, float]
    size_hi: tuple[float, float, float]
    speed: tuple[float, float]
    turn_rate: float
    parts: tuple[tuple[float, ...], ...]  # (cx, cy, cz, sl, sw, sh, palette slot, pattern)
    palettes: tuple[list[Rgb], ...]


def _humanoid(leg_w: float, leg_gap: float, leg_h: float, torso_w: float, head: tuple[float, float, float]):
    hl, hw, hh = head
    torso_h = 1.0 - leg_h - hh
    return (
        (0.0, -leg_gap, -0.5 + leg_h / 2, 0.6, leg_w, leg_h, 1, PLAIN),
        (0.0, leg_gap, -0.5 + leg_h / 2, 0.6, leg_w, leg_h, 1, PLAIN),
        (0.0, 0.0, -0.5 + leg_h + torso_h / 2, 1.0, torso_w, torso_h, 0, STRIPES_H),
        (0.0, 0.0, 0.5 - hh / 2, hl, hw, hh, 2, PLAIN),
    )


CLASS_SPECS: dict[str, ClassSpec] = {
    "person": ClassSpec(
        (0.25, 0.45, 1.55),
        (0.35, 0.6, 1.9),
        (0.7, 1.5),
        2.5,
        _humanoid(0.3, 0.2, 0.48, 1.0, (0.75, 0.35, 0.12)),
        (CLOTHES, TROUSERS, SKIN),
    ),
    "fourier_gr1_t2": ClassSpec(
        (0.3, 0.55, 1.6),
        (0.4, 0.65, 1.7),
        (0.5, 1.0),
        1.2,
        _humanoid(0.36, 0.22, 0.46, 1.0, (0.85, 0.45, 0.15)),
        (ROBOT_LIGHT, DARK, DARK),
    ),
    "agility_digit": ClassSpec(
        (0.4, 0.5, 1.5),
        (0.5, 0.6, 1.65),
        (0.6, 1.2),
        1.5,
        _humanoid(0.18, 0.32, 0.55, 0.85, (0.5, 0.35, 0.08)),
        (GREYS, DARK, ROBOT_LIGHT),
    ),
    "nova_carter": ClassSpec(
        (0.65, 0.45, 0.4),
        (0.8, 0.6, 0.5),
        (0.5, 1.4),
        1.8,
        (
            (0.0, 0.0, -0.15, 1.0, 1.0, 0.7, 0, SPECKLE),
            (0.25, 0.0, 0.35, 0.25, 0.5, 0.3, 1, PLAIN),
            (-0.2, 0.0, 0.22, 0.5, 0.8, 0.05, 2, PLAIN),
        ),
        (DARK + GREYS[1:2], ROBOT_LIGHT, [(0.15, 0.3, 0.65), (0.2, 0.55, 0.25)]),
    ),
}
