"""The curation policy: which flags keep a turn or a scenario out of later stages, and the
detectors' thresholds.

Curation annotates; the policy decides. Later stages (cases, SFT, release) never re-read the
policy: `curate` records its verdict in each scenario's `meta["curation"]` (`excluded`,
`excluded_turns`), and `is_excluded` / `kept_turns` read that record. The defaults live in
`policy.toml` beside this module, documented line by line.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from importlib.resources import files
from pathlib import Path
from typing import Any

from deescalwild.core import Scenario, Turn
from deescalwild.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CURATION_SCHEMA = "deescalwild.curation/1"

TURN_FLAGS = ("empty", "repetition_loop", "alternating_loop", "duplicate_of_previous",
              "advertisement", "narration")
SCENARIO_FLAGS = ("off_domain", "no_officer", "no_civilian", "too_short", "mostly_narration",
                  "near_duplicate")


@dataclass(frozen=True)
class Thresholds:
    """Detector thresholds, measured on the published corpus (docs/curation.md)."""

    repetition_min_repeats: int = 15
    repetition_max_unit: int = 24
    alternating_min_rows: int = 10
    duplicate_min_words: int = 3
    min_turns: int = 4
    narration_max_share: float = 0.5
    police_terms_min_per_1000: float = 4.0
    off_domain_min_words: int = 200
    shingle_words: int = 5
    num_perm: int = 128
    near_duplicate_jaccard: float = 0.5
    near_duplicate_containment: float = 0.55
    related_jaccard: float = 0.2
    related_containment: float = 0.3


@dataclass(frozen=True)
class Policy:
    exclude_turns: frozenset[str] = frozenset(TURN_FLAGS)
    exclude_scenarios: frozenset[str] = frozenset(SCENARIO_FLAGS)
    thresholds: Thresholds = field(default_factory=Thresholds)
    source: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "turns": {"exclude": sorted(self.exclude_turns)},
            "scenarios": {"exclude": sorted(self.exclude_scenarios)},
            "thresholds": asdict(self.thresholds),
        }


def default_policy_path() -> Path:
    return Path(str(files("deescalwild.curate") / "policy.toml"))


def load_policy(path: str | Path | None = None) -> Policy:
    """Read a policy TOML file (the shipped defaults when `path` is None).

    Unknown sections, keys and flag names are errors naming the file: a typo in a policy must
    not silently keep noise in a benchmark.
    """
    p = Path(path) if path is not None else default_policy_path()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(p, None, f"cannot read policy: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise InputError(p, None, f"expected a TOML policy file ({e})") from e
    unknown = set(data) - {"turns", "scenarios", "thresholds"}
    if unknown:
        raise InputError(p, None, f"unknown section(s) {sorted(unknown)}; expected turns, "
                                  "scenarios, thresholds")

    def flags(section: str, known: tuple[str, ...]) -> frozenset[str]:
        sec = data.get(section, {})
        if set(sec) - {"exclude"}:
            raise InputError(p, None, f"[{section}] takes only 'exclude'")
        names = sec.get("exclude", list(known))
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(p, None, f"[{section}] exclude: expected a list of flag names")
        bad = sorted(set(names) - set(known))
        if bad:
            raise InputError(p, None, f"[{section}] exclude: unknown flag(s) {bad}; known: "
                                      f"{', '.join(known)}")
        return frozenset(names)

    th = data.get("thresholds", {})
    known_th = {f.name: f for f in fields(Thresholds)}
    bad = sorted(set(th) - set(known_th))
    if bad:
        raise InputError(p, None, f"[thresholds] unknown key(s) {bad}")
    defaults = Thresholds()
    for k, v in th.items():
        want = type(getattr(defaults, k))
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                want is int and not isinstance(v, int)):
            kind = "an integer" if want is int else "a number"
            raise InputError(p, None, f"[thresholds] {k}: expected {kind}, found {v!r}")
    return Policy(flags("turns", TURN_FLAGS), flags("scenarios", SCENARIO_FLAGS),
                  Thresholds(**{k: type(getattr(defaults, k))(v) for k, v in th.items()}),
                  source=str(path) if path is not None else "default")


def is_excluded(scenario: Scenario) -> bool:
    """Did the curation policy keep this scenario out of later stages? (False if uncurated.)"""
    return bool((scenario.meta.get("curation") or {}).get("excluded", False))


def kept_turns(scenario: Scenario) -> list[Turn]:
    """The turns later stages use: all but those the curation policy excluded."""
    drop = set((scenario.meta.get("curation") or {}).get("excluded_turns") or ())
    if not drop:
        return list(scenario.turns)
    return [t for t in scenario.turns if t.index not in drop]
