"""Key-value storage behind one small interface, with an in-memory and a LevelDB backend.

The chain logic depends only on `KV`. Both backends run the same test suite, so the in-memory one cannot
drift from the real one. `write` is the only way to change data and it is atomic: LevelDB applies a
write batch entirely or not at all, and with `sync=True` it is on disk before `write` returns.
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Iterator, Mapping, Protocol

import plyvel


class KV(Protocol):
    """Byte keys to byte values; reads see every completed write."""

    def get(self, key: bytes) -> bytes | None:
        """The value stored at `key`, or None."""

    def iterate(self, prefix: bytes, start: bytes | None = None, reverse: bool = False,
                stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs under `prefix` in key order (reversed with `reverse`), with keys from `start`
        (inclusive) and below `stop` (exclusive) if given: a page continues from either end."""

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        """Apply all puts (bytes) and deletes (None) atomically."""

    def close(self) -> None:
        """Release the database."""


class MemoryKV:
    """A dict with a sorted key list; for tests and tools, same contract as LevelKV."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(self, prefix: bytes, start: bytes | None = None, reverse: bool = False,
                stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        lo = bisect.bisect_left(self._keys, max(prefix, start) if start else prefix)
        selected: list[bytes] = []
        for k in self._keys[lo:]:  # keys under a prefix are contiguous
            if not k.startswith(prefix) or (stop is not None and k >= stop):
                break
            selected.append(k)
        for k in (reversed(selected) if reverse else selected):
            yield k, self._data[k]

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        for key, value in changes.items():
            if value is None:
                if key in self._data:
                    del self._data[key]
                    del self._keys[bisect.bisect_left(self._keys, key)]
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = bytes(value)

    def close(self) -> None:
        pass


class LevelKV:
    """plyvel/LevelDB backend; every write is one atomic batch."""

    def __init__(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        # a bloom filter spares a lookup of an absent key (a new lot, order or schedule entry) a read per
        # level, so a lookup costs about the same in a large state as in a small one
        self._db = plyvel.DB(str(path), create_if_missing=True, bloom_filter_bits=10)

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def iterate(self, prefix: bytes, start: bytes | None = None, reverse: bool = False,
                stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        end = _prefix_end(prefix)
        if stop is not None and (end is None or stop < end):
            end = stop
        if reverse:
            # plyvel (1.5) yields nothing in reverse when the last key in range equals the start bound
            # (`prefix=b"a"` over a lone key b"a"), so bound only the top and stop at the bottom here.
            low = max(prefix, start) if start is not None else prefix
            it = self._db.iterator(stop=end, reverse=True) if end else self._db.iterator(reverse=True)
            for key, value in it:
                if key < low:
                    break
                yield key, value
            return
        if stop is None and (start is None or start <= prefix):
            yield from self._db.iterator(prefix=prefix)
            return
        low = max(prefix, start) if start is not None else prefix
        yield from (self._db.iterator(start=low, stop=end) if end else self._db.iterator(start=low))

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        with self._db.write_batch(sync=sync) as batch:
            for key, value in changes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key with `prefix` (None if there is none)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)
