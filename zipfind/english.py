"""English words for the token task: wordfreq's top words spelled in lowercase letters, and their frequencies.

wordfreq (an optional extra, `pip install 'zipfind[language]'`; its data are CC-BY-SA and are read from the
installed package, never copied into a run or the repository) ranks words by frequency in a blend of corpora.
zipfind keeps the words made of the letters a-z only, within a length range, in wordfreq's order.
"""

from __future__ import annotations

import functools
import string

import numpy as np

ALPHABET = string.ascii_lowercase  # token i (0..25) is letter ALPHABET[i]
SEARCH = 50_000  # how far down wordfreq's list zipfind looks for K usable words


class MissingExtra(RuntimeError):
    """wordfreq is not installed."""


@functools.lru_cache(maxsize=8)
def english_words(K: int, min_len: int, max_len: int) -> tuple[tuple[str, ...], np.ndarray]:
    """The K most frequent English words of min_len..max_len letters a-z, and their wordfreq frequencies
    (per word of English text, so they do not sum to 1). Fewer than K words when wordfreq has fewer."""
    try:
        import wordfreq
    except ImportError:  # pragma: no cover - CI installs the extra
        raise MissingExtra("lexicon: 'english' needs wordfreq; pip install 'zipfind[language]'") from None
    words = []
    for w in wordfreq.top_n_list("en", SEARCH):
        if min_len <= len(w) <= max_len and all(c in ALPHABET for c in w) and w not in words:
            words.append(w)
            if len(words) == K:
                break
    freqs = np.array([wordfreq.word_frequency(w, "en") for w in words], dtype=float)
    return tuple(words), freqs


def spell(word: str) -> list[int]:
    """Token ids of a lowercase word."""
    return [ALPHABET.index(c) for c in word]


def zipf_exponent(freqs: np.ndarray, lo: int = 1, hi: int | None = None) -> float:
    """Least-squares slope of -log frequency on log rank over ranks lo..hi (1-based): English's alpha."""
    f = np.sort(np.asarray(freqs, dtype=float))[::-1][lo - 1 : hi]
    r = np.arange(lo, lo + f.size, dtype=float)
    return float(-np.polyfit(np.log(r), np.log(f), 1)[0])


def english_alpha(cells) -> float | None:
    """The Zipf exponent fitted to wordfreq's frequencies of the English lexicon a cells or onsets table uses
    (its first English-lexicon cell's K and word lengths); None when no cell uses the English lexicon."""
    if "lexicon" not in cells.columns or not (cells["lexicon"] == "english").any():
        return None
    row = cells[cells["lexicon"] == "english"].iloc[0]
    return zipf_exponent(english_words(int(row["K"]), int(row["word_len"]),
                                       max(int(row["word_len"]), int(row["word_len_max"])))[1])
