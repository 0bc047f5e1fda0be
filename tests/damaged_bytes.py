"""A hypothesis draw of a damaged file: a prefix of a good one (a truncation)
or random bytes, for the property tests of every file reader."""
from hypothesis import strategies as st


def damaged(data, good: bytes, max_size: int) -> bytes:
    if data.draw(st.booleans(), label="truncate"):
        return good[: data.draw(st.integers(0, len(good)), label="keep")]
    return data.draw(st.binary(max_size=max_size), label="bytes")
