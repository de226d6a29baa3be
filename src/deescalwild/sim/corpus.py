"""The real civilian lines the embedded simulator answers with: a retrieval index over a corpus.

`retrieval` in the benchmark indexes a corpus's *train* split, because there it must never see
the test videos. The simulator is not an evaluation, so it indexes every kept scenario of the
corpus it is given, whatever its split, and without one the shipped sample corpus (imported and
curated on the fly: under a second). Curation flags are honoured either way, so diarizer loops,
adverts and narrators never speak as the civilian.

Every scenario is pseudonymised on the way in (`curate.privacy.pseudonymize`: names replaced,
e-mail addresses, phone numbers and street addresses masked), also when the corpus given was
not: a trainee must never hear a real person's phone number read out by the simulator.
Pseudonymising an already pseudonymised corpus changes nothing that matters. Replies that are
nothing but placeholders after it ("Civilian A. Civilian A.", "[PHONE].") are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from deescalwild.core import Case, Scenario
from deescalwild.errors import DeescalwildError
from deescalwild.responders.retrieval import RetrievalResponder


def corpus_cases(train: Path | None = None, context_turns: int = 3) -> Iterator[Case]:
    """(context -> civilian reply) cases of every kept scenario of `train` (a corpus JSONL), or
    of the shipped sample when `train` is None."""
    from deescalwild.bench.cases import scenario_cases
    from deescalwild.curate.privacy import pseudonymize

    for sc in _scenarios(train):
        pseudonymize(sc)
        for case in scenario_cases(sc, history=context_turns):
            if _ROLE_WORDS.sub("", _PLACEHOLDER.sub("", case.reference)).strip(" .,!?-'\""):
                yield case


# what pseudonymisation puts in ("[NAME B]", "[PHONE]", "Civilian A"): a reply that is nothing
# else ("Civilian A. Civilian A.", a spelled-out name) says nothing a trainee can answer
_PLACEHOLDER = re.compile(r"\[[A-Z]+(?: [A-Z]{1,2})?\]")
_ROLE_WORDS = re.compile(r"\b(?:Officer|Civilian|Bystander|Dispatcher|Narrator|Speaker) "
                         r"[A-Z]{1,2}\b")


def _scenarios(train: Path | None) -> list[Scenario]:
    if train is not None:
        from deescalwild.core import read_corpus

        path = Path(train)
        if not path.is_file():
            raise DeescalwildError(f"--train {path}: no such corpus file")
        return list(read_corpus(path))
    from deescalwild.corpus.importer import import_transcripts
    from deescalwild.corpus.sample import sample_path
    from deescalwild.curate.annotate import curate_scenarios
    from deescalwild.curate.policy import load_policy

    scenarios, _ = import_transcripts([sample_path()])
    curate_scenarios(scenarios, load_policy())
    return scenarios


def simulator_retrieval(spec: str = "retrieval", train: Path | None = None) -> RetrievalResponder:
    """The `retrieval` responder of a spec without `train=`, over `corpus_cases(train)`."""
    from deescalwild.responders.registry import parse_spec

    _, arg, opts = parse_spec(spec)
    if arg:
        raise DeescalwildError(f"retrieval takes no argument (got {arg!r})")
    try:
        responder = RetrievalResponder.from_cases(
            corpus_cases(train, int(opts.get("context_turns", 3))), **opts)
    except ValueError as e:  # pydantic's ValidationError: a bad option in the spec
        raise DeescalwildError(f"responder spec {spec!r}: {e}") from e
    responder.spec = spec
    responder.source = str(train) if train else "sample"  # type: ignore[attr-defined]
    # a search only reads the index; the dense re-rank's embedding cache is not thread-safe
    responder.thread_safe = not responder.options.dense  # type: ignore[attr-defined]
    return responder
