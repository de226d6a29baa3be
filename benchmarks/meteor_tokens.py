"""How much METEOR moves if sentences are split first, as the paper's `evaluate` does.

Our METEOR tokenizes the whole text with NLTK's word tokenizer (docs/metrics.md); `evaluate`
first splits sentences with NLTK's trained punkt model, which has no offline source. This
re-scores a results folder's replies both ways, with punkt's algorithm told common
abbreviations standing in for the trained model, and prints the means per responder.

    python benchmarks/meteor_tokens.py out/paper/results/samples.jsonl
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from nltk.translate.meteor_score import single_meteor_score

    from deescalwild.bench.meteor import ensure_wordnet

    ensure_wordnet()
    params = PunktParameters()
    params.abbrev_types = {"mr", "mrs", "ms", "dr", "jr", "sr", "st", "sgt", "lt", "capt", "det",
                           "a.m", "p.m", "u.s", "etc", "vs"}
    punkt, words = PunktSentenceTokenizer(params), NLTKWordTokenizer()

    def split(text: str) -> list[str]:
        return [w for s in punkt.tokenize(text) for w in words.tokenize(s)]

    with open(sys.argv[1], encoding="utf-8") as fh:
        samples = [json.loads(line) for line in fh]
    print(f"{'responder':<26}{'whole text':>11}{'sentences':>11}{'pairs differing':>17}")
    for resp in dict.fromkeys(s["responder"] for s in samples):
        ok = [s for s in samples if s["responder"] == resp and not s["error"]]
        a = [100 * single_meteor_score(words.tokenize(s["reference"]),
                                       words.tokenize(s["prediction"])) for s in ok]
        b = [100 * single_meteor_score(split(s["reference"]), split(s["prediction"]))
             for s in ok]
        diff = sum(x != y for x, y in zip(a, b))
        print(f"{resp[:25]:<26}{sum(a) / len(a):>11.2f}{sum(b) / len(b):>11.2f}"
              f"{f'{diff}/{len(a)}':>17}")


if __name__ == "__main__":
    main()
