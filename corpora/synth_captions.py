"""Paraphrased captions that state a subset of a clip's attributes (always its source)."""

from __future__ import annotations

import numpy as np

NOUNS = {
    "tone": ("tone", "pure tone", "sine tone"),
    "chirp": ("chirp", "sweeping chirp", "frequency sweep"),
    "noise burst": ("noise burst", "burst of noise", "hiss of noise"),
    "click train": ("click train", "train of clicks", "series of clicks"),
    "hum": ("hum", "droning hum", "buzzing hum"),
}
PITCH_WORDS = {"low": ("low", "low-pitched", "deep"), "high": ("high", "high-pitched", "shrill")}
EVENT_WORDS = {
    "one": ("once", "a single time", "one time"),
    "two": ("twice", "two times"),
    "three": ("three times", "thrice"),
    "repeating": ("over and over", "repeatedly in a steady rhythm", "again and again"),
}
LOUDNESS_WORDS = {
    "rising": ("getting louder", "growing louder", "increasing in volume"),
    "falling": ("getting quieter", "fading away", "decreasing in volume"),
    "steady": ("at a steady volume", "at a constant level"),
}
BACKGROUND_WORDS = {
    "silence": ("in silence", "against a silent background", "with nothing else audible"),
    "noise": ("over background noise", "with static in the background", "over a noisy background"),
    "hum": ("over a background hum", "with an electrical hum behind it"),
}
VERBS = ("plays", "sounds", "is heard")
OPTIONAL = ("pitch", "events", "loudness", "background")


def caption_text(attrs: dict[str, str], stated: tuple[str, ...], rng: np.random.Generator) -> str:
    """One sentence stating ``attrs[k]`` for k in ``stated`` (source always)."""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    noun = pick(NOUNS[attrs["source"]])
    if "pitch" in stated:
        noun = f"{pick(PITCH_WORDS[attrs['pitch']])} {noun}"
    article = "An" if noun[0] in "aeiou" else "A"
    parts = [f"{article} {noun} {pick(VERBS)}"]
    if "events" in stated:
        parts.append(pick(EVENT_WORDS[attrs["events"]]))
    text = " ".join(parts)
    if "loudness" in stated:
        text += ", " + pick(LOUDNESS_WORDS[attrs["loudness"]])
    if "background" in stated:
        text += ", " + pick(BACKGROUND_WORDS[attrs["background"]])
    return text + "."


def clip_captions(attrs: dict[str, str], rng: np.random.Generator,
                  n: int = 5) -> list[tuple[str, tuple[str, ...]]]:
    """``n`` distinct (caption, stated attribute names): the first states everything, the others
    the source plus 1-3 other attributes."""
    out: list[tuple[str, tuple[str, ...]]] = []
    seen: set[str] = set()
    for attempt in range(200):
        if not out:
            stated = ("source",) + OPTIONAL
        else:
            k = int(rng.integers(1, 4))
            chosen = sorted(rng.choice(len(OPTIONAL), size=k, replace=False).tolist())
            stated = ("source",) + tuple(OPTIONAL[i] for i in chosen)
        text = caption_text(attrs, stated, rng)
        if text not in seen:
            seen.add(text)
            out.append((text, stated))
        if len(out) == n:
            return out
    raise RuntimeError(f"could not draw {n} distinct captions for {attrs}")


def satisfies(attrs: dict[str, str], required: dict[str, str]) -> bool:
    """Does a clip with ``attrs`` fit every stated attribute value in ``required``?"""
    return all(attrs[k] == v for k, v in required.items())
