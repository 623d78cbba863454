"""Length groups: rows ordered by length, cut so that no group pads beyond its caps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model_runtime.contract import length_groups, pad_ids


@given(st.lists(st.integers(0, 900), max_size=200), st.integers(1, 5000), st.integers(1, 64))
def test_every_row_once_sorted_and_within_caps(lengths: list[int], max_tokens: int, max_rows: int) -> None:
    groups = length_groups(lengths, max_tokens, max_rows)
    rows = [i for g in groups for i in g]
    assert sorted(rows) == list(range(len(lengths)))
    assert [lengths[i] for i in rows] == sorted(lengths)
    for g in groups:
        assert len(g) <= max_rows
        assert len(g) == 1 or len(g) * max(1, max(lengths[i] for i in g)) <= max_tokens


def test_no_cap_is_one_group_and_padding_is_right_aligned_zeros() -> None:
    assert length_groups([3, 1, 2], None) == [[1, 2, 0]]
    batch, lengths = pad_ids([[5, 6], [7]], extra_steps=1)
    assert batch.tolist() == [[5, 6, 0], [7, 0, 0]] and lengths.tolist() == [2, 1]
