"""What each sequence holds in llama.cpp's unified KV cache, kept alongside it.

In a unified cache a cell carries a set of sequence ids: copying a prefix to another
sequence (`llama_memory_seq_cp`) adds the id to the prefix's cells instead of filling new
ones. `KvBook` mirrors that with reference counts, so the decoder knows the free cells
exactly (admission control) and which tokens each sequence already holds (prefix reuse).
"""

from __future__ import annotations

from typing import Any

import llama_cpp


def common_prefix(a: list[int], b: list[int]) -> int:
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


class KvBook:
    def __init__(self, mem: Any, n_seq: int, n_cells: int, reuse: bool = True) -> None:
        self.mem = mem
        self.n_cells = n_cells
        self.reuse = reuse
        """False for models whose memory cannot drop a sequence's tail (recurrent, hybrid)
        or silently loses old positions (sliding-window attention): nothing is reused."""
        self.tokens: list[list[int]] = [[] for _ in range(n_seq)]
        """Per sequence: the token at each position held in the cache."""
        self._cells: list[list[int]] = [[] for _ in range(n_seq)]
        self._refs: dict[int, int] = {}
        self._next = 0

    @property
    def used(self) -> int:
        return len(self._refs)

    def common_prefix(self, seq: int, tokens: list[int]) -> int:
        """How many of `tokens` `seq` already holds, from the start."""
        return common_prefix(self.tokens[seq], tokens) if self.reuse else 0

    def _drop(self, seq: int, keep: int) -> None:
        for cell in self._cells[seq][keep:]:
            left = self._refs[cell] - 1
            if left:
                self._refs[cell] = left
            else:
                del self._refs[cell]
        del self._cells[seq][keep:]
        del self.tokens[seq][keep:]

    def keep(self, seq: int, n: int) -> int:
        """Drop positions n.. of `seq`; returns what it still holds (0 when the memory
        cannot drop a partial tail: then the whole sequence goes)."""
        if n >= len(self.tokens[seq]):
            return len(self.tokens[seq])
        if n <= 0 or not llama_cpp.llama_memory_seq_rm(self.mem, seq, n, -1):
            llama_cpp.llama_memory_seq_rm(self.mem, seq, -1, -1)
            n = 0
        self._drop(seq, n)
        return n

    def copy_prefix(self, src: int, dst: int, n: int) -> None:
        """`dst` becomes the first n positions of `src`, sharing their cells."""
        self.keep(dst, 0)
        if n <= 0:
            return
        llama_cpp.llama_memory_seq_cp(self.mem, src, dst, 0, n)
        self.tokens[dst] = self.tokens[src][:n]
        self._cells[dst] = self._cells[src][:n]
        for cell in self._cells[dst]:
            self._refs[cell] += 1

    def appended(self, seq: int, tokens: list[int]) -> None:
        """`tokens` were decoded into `seq` at its next positions (new cells)."""
        self.tokens[seq].extend(tokens)
        for _ in tokens:
            self._cells[seq].append(self._next)
            self._refs[self._next] = 1
            self._next += 1
