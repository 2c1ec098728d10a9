"""Sizes as `ds01 limits` prints them."""

import pytest

from ds01.storage.usage import format_size_human


@pytest.mark.parametrize("n, shown", [
    (0, "0"),  # an empty slice's memory, once printed as 0T
    (512, "512B"),
    (1024, "1K"),
    (32 * 1024**3, "32G"),
    (1536 * 1024**2, "1536M"),
    (int(1.5 * 1024**3) + 1, "1.5G"),
])  # fmt: skip
def test_sizes(n, shown):
    assert format_size_human(n) == shown
