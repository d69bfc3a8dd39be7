"""Crop / pad / window policies."""

from __future__ import annotations

import pytest
import torch

from audioret.audio import crop, num_windows, pad_to, split_windows, valid_samples_per_window


def test_crop_modes():
    x = torch.arange(10.0)
    assert crop(x, 4).tolist() == [0, 1, 2, 3]
    assert crop(x, 4, "center").tolist() == [3, 4, 5, 6]
    assert crop(x, 4, "end").tolist() == [6, 7, 8, 9]
    assert crop(x, 20) is x
    with pytest.raises(ValueError):
        crop(x, 4, "middle")  # type: ignore[arg-type]


def test_pad_to_pads_right_with_zeros_and_never_shortens():
    x = torch.ones(3)
    assert pad_to(x, 5).tolist() == [1, 1, 1, 0, 0]
    assert pad_to(x, 2) is x
    assert pad_to(torch.ones(2, 3), 4).shape == (2, 4)


@pytest.mark.parametrize("n,window,expected", [(0, 4, 1), (1, 4, 1), (4, 4, 1), (5, 4, 2), (12, 4, 3)])
def test_split_windows_shapes_and_padding(n, window, expected):
    x = torch.arange(1, n + 1, dtype=torch.float32)
    w = split_windows(x, window)
    assert w.shape == (expected, window) == (num_windows(n, window), window)
    assert w.flatten()[:n].tolist() == x.tolist()
    assert w.flatten()[n:].abs().sum() == 0
    assert sum(valid_samples_per_window(n, window)) == n


def test_split_windows_rejects_batches():
    with pytest.raises(ValueError):
        split_windows(torch.zeros(2, 8), 4)
