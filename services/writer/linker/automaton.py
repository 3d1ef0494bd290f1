"""Aho-Corasick over word tokens: every occurrence of many phrases in one pass.

The linker looks for its targets' keyword variants in a paragraph. Both sides are
sequences of light stems (`services.writer.text.stem`), so "running shoes" finds
"running shoe", and a phrase only matches whole words. A character automaton
(pyahocorasick) would need a stemmed projection of the text and word-boundary checks on
every hit; over tokens neither is needed, and it stays pure Python (a 10,000-page site's
variants build in well under a second, `bench/linker.py`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator, Sequence
from typing import Generic, TypeVar

V = TypeVar("V", bound=Hashable)


class TokenAutomaton(Generic[V]):
    """Add phrases (token tuples) with a value each, `build()`, then `find(tokens)`."""

    def __init__(self) -> None:
        self._goto: list[dict[str, int]] = [{}]
        self._fail: list[int] = [0]
        # (phrase length, value) ending at each state, its own and its suffixes'.
        self._out: list[list[tuple[int, V]]] = [[]]
        self._built = False

    def __len__(self) -> int:
        return len(self._goto)

    def add(self, phrase: Sequence[str], value: V) -> None:
        if not phrase:
            raise ValueError("an empty phrase matches nothing")
        if self._built:
            raise RuntimeError("add() after build()")
        state = 0
        for token in phrase:
            nxt = self._goto[state].get(token)
            if nxt is None:
                nxt = len(self._goto)
                self._goto[state][token] = nxt
                self._goto.append({})
                self._fail.append(0)
                self._out.append([])
            state = nxt
        entry = (len(phrase), value)
        if entry not in self._out[state]:
            self._out[state].append(entry)

    def build(self) -> TokenAutomaton[V]:
        """Failure links breadth first; each state's outputs include its suffixes'."""
        queue: deque[int] = deque(self._goto[0].values())
        while queue:
            state = queue.popleft()
            for token, child in self._goto[state].items():
                queue.append(child)
                f = self._fail[state]
                while f and token not in self._goto[f]:
                    f = self._fail[f]
                target = self._goto[f].get(token, 0)
                self._fail[child] = target if target != child else 0
                self._out[child] = self._out[child] + [
                    o for o in self._out[self._fail[child]] if o not in self._out[child]]
        for outputs in self._out:
            outputs.sort(key=lambda o: -o[0])
        self._built = True
        return self

    def find(self, tokens: Sequence[str]) -> Iterator[tuple[int, int, V]]:
        """Every (start, end, value) with `tokens[start:end]` an added phrase, in order of
        `end`, then longest first."""
        if not self._built:
            raise RuntimeError("find() before build()")
        goto, fail, out = self._goto, self._fail, self._out
        state = 0
        for i, token in enumerate(tokens):
            while state and token not in goto[state]:
                state = fail[state]
            state = goto[state].get(token, 0)
            for length, value in out[state]:
                yield i + 1 - length, i + 1, value
