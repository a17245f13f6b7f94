"""Δt normalisation: every accepted layout, and the refused ones."""

from __future__ import annotations

import pytest
import torch

from lnn_nav.models.timespans import sequence_timespans, step_timespans

KW = {"device": torch.device("cpu"), "dtype": torch.float32}


@pytest.mark.parametrize(
    "ts, expected_row",
    [
        (None, [1.0, 1.0, 1.0]),
        (0.5, [0.5, 0.5, 0.5]),
        (torch.tensor(0.25), [0.25, 0.25, 0.25]),
        (torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]), [0.1, 0.2, 0.3]),
        (torch.tensor([[[0.1], [0.2], [0.3]], [[0.4], [0.5], [0.6]]]), [0.1, 0.2, 0.3]),
    ],
)
def test_sequence_layouts_become_b_t_1(ts, expected_row):
    out = sequence_timespans(ts, 2, 3, **KW)
    assert out.shape == (2, 3, 1)
    torch.testing.assert_close(out[0, :, 0], torch.tensor(expected_row))


def test_per_sample_vector_is_accepted_only_for_single_steps():
    out = sequence_timespans(torch.tensor([0.1, 0.2]), 2, 1, **KW)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="do not fit"):
        sequence_timespans(torch.tensor([0.1, 0.2]), 2, 2, **KW)


def test_time_vector_is_accepted_for_one_sequence():
    out = sequence_timespans(torch.tensor([0.1, 0.2, 0.3]), 1, 3, **KW)
    assert out.shape == (1, 3, 1)


def test_step_layouts_become_b_1():
    for dt in (0.2, torch.tensor(0.2), torch.full((3,), 0.2), torch.full((3, 1), 0.2)):
        torch.testing.assert_close(step_timespans(dt, 3, **KW), torch.full((3, 1), 0.2))
    with pytest.raises(ValueError, match=r"\[3\] or \[3, 1\]"):
        step_timespans(torch.ones(2), 3, **KW)


@pytest.mark.parametrize("bad", [float("inf"), -1.0, torch.tensor([[float("nan")]])])
def test_non_finite_or_negative_dt_is_refused(bad):
    with pytest.raises(ValueError, match="Δt"):
        step_timespans(bad, 1, **KW)


def test_dtype_follows_the_input():
    out = sequence_timespans(
        torch.ones(1, 2, dtype=torch.float64), 1, 2, device=torch.device("cpu"), dtype=torch.float32
    )
    assert out.dtype == torch.float32
