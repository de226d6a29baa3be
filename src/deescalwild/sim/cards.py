"""Scenario cards: the call, the civilian, and what the trainee should learn, one YAML file each.

A card is what a training academy's scenario writer hands a role-player: where the encounter
happens, what dispatch told the officer, who the civilian is (a pseudonymous persona with a
background, a way of talking, and what makes them worse or better), how agitated they are when
the officer arrives, and the learning objectives. The simulator reads the triggers (the analyser
and the agitation rule), gives the responder the scene text (`Card.context()`), and the report
quotes the objectives. The schema is documented in `docs/scenario-cards.md`.

Choices, and why:

- **Strict schema.** pydantic models with `extra="forbid"`, so a typo (`agitaton_start`) is an
  error that names the key and suggests the right one, never a silently ignored setting. Numbers
  are strict integers (a YAML `yes` is not an age). Every error names the file, the line of the
  offending key (from `yaml.compose` node marks, falling back to the nearest parent), the field
  path and what was expected; `validate` reports every problem, not just the first.
- **Ids.** `id` is required and is a slug (lowercase letters, digits, hyphens); the file name is
  free. Two cards with one id are an error naming both files, except that a user card may
  replace a built-in one on purpose (a local variant of a shipped scenario): the library keeps
  the user's and lists the replaced ids in `CardLibrary.overrides` so interfaces can say so.
- **Scene text.** `context()` is what a human actor would be told, in the second person: the
  setting, the dispatch, who they are, and what escalates or calms them phrased naturally (LLM
  responders role-play from it). It never holds the agitation number, which changes per turn
  and reaches the responder separately (`request.extra["state"]`). It is capped at
  `CONTEXT_LIMIT` characters, checked when the card is loaded, so small on-device models keep
  their prompt budget; the error names the longest field to shorten.
- **Safety.** `yaml.safe_load` semantics only (`compose` + safe construction); cards are
  fictional (see the docs), and nothing here reads anything but the card files given.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from deescalwild.errors import InputError
from deescalwild.sim.errors import NotFound
from deescalwild.sim.taxonomy import TACTICS

__all__ = ["CARD_SCHEMA", "CONTEXT_LIMIT", "Card", "CardLibrary", "Persona", "Triggers",
           "builtin_dir", "load_card", "validate"]

CARD_SCHEMA = "deescalwild.card/1"
CONTEXT_LIMIT = 1200  # characters of scene text a responder gets (`Card.context()`)
SUFFIXES = (".yaml", ".yml")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

# how the scene text names each tactic, as a person would describe it to an actor
_NATURAL = {
    "introduction": "officers saying who they are and why they came",
    "name_use": "hearing their name",
    "empathy": "having their feelings acknowledged",
    "active_listening": "being really listened to",
    "open_question": "being asked for their side",
    "explanation": "being told what is happening and why",
    "offering_choices": "having a choice",
    "calm_request": "polite requests",
    "reassurance": "reassurance",
    "threat": "threats",
    "shouted_command": "being shouted at",
    "repeated_command": "repeated orders",
    "insult": "insults or condescension",
    "dismissive": "being brushed off",
    "profanity": "swearing",
    "ultimatum": "ultimatums",
}


def _known_tactic(value: str) -> str:
    if value not in TACTICS:
        raise ValueError(f"unknown tactic {value!r}; valid: {', '.join(TACTICS)}")
    return value


def _has_word(value: str) -> str:
    if not re.search(r"\w", value):
        raise ValueError(f"a phrase needs at least one word, got {value!r}")
    return value


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(f"expected a slug (lowercase letters, digits, hyphens, e.g. "
                         f"'traffic-stop-night'), got {value!r}")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
OptText = Annotated[str, StringConstraints(strip_whitespace=True)]
Slug = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
                 AfterValidator(_slug)]
TacticId = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_known_tactic)]
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80),
                   AfterValidator(_has_word)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_means_default(cls, data: Any) -> Any:
        """An optional key left empty in YAML (`opening:`, `phrases:`) takes its default."""
        if isinstance(data, dict):
            optional = {k for k, f in cls.model_fields.items() if not f.is_required()}
            data = {k: v for k, v in data.items() if not (v is None and k in optional)}
        return data


class Triggers(_Model):
    """Tactic ids (from `sim.taxonomy.TACTICS`) and exact phrases (matched case-insensitively on
    word boundaries by the analyser) that move this person's agitation."""

    tactics: list[TacticId] = Field(default_factory=list,
                                    description="tactic ids that affect this person more")
    phrases: list[Phrase] = Field(default_factory=list,
                                  description="words that affect this person, e.g. 'hospital'")


class Persona(_Model):
    """The civilian. Fictional and pseudonymous: no real person, no real address."""

    name: Text = Field(description="pseudonymous full name, e.g. 'Walter Brandt'")
    age: Annotated[StrictInt, Field(ge=0, le=120)] = Field(description="age in years")
    emotional_state: Text = Field(description="how they feel as the officer arrives")
    speaking_style: Text = Field(description="how they talk: pace, register, habits")
    background: Text = Field(description="who they are and what led to this moment")
    wants: OptText = Field("", description="what they want out of the encounter (optional)")
    aliases: list[Text] = Field(default_factory=list,
                                description="other names they answer to (first name, 'Mr. X')")
    escalated_by: Triggers = Field(default_factory=Triggers,
                                   description="what makes them more agitated")
    calmed_by: Triggers = Field(default_factory=Triggers,
                                description="what calms them")

    @property
    def names(self) -> list[str]:
        """The full name, its first and last words, and the aliases (for name-use matching)."""
        words = self.name.split()
        out = [self.name, words[0], words[-1], *self.aliases]
        return list(dict.fromkeys(n for n in out if n))


class Card(_Model):
    """One scenario. `path` is where it was loaded from (not part of the YAML, never dumped)."""

    id: Slug = Field(description="unique slug, e.g. 'welfare-check-walter'")
    title: Text = Field(description="one line shown in the card picker")
    call_type: Slug = Field(description="kind of call, e.g. 'traffic-stop', 'welfare-check'")
    setting: Text = Field(description="where and when the encounter happens")
    dispatch: Text = Field(description="what dispatch told the officer")
    persona: Persona
    agitation_start: Annotated[StrictInt, Field(ge=0, le=100)] = Field(
        description="agitation when the officer arrives, 0 (calm) to 100 (explosive)")
    opening: OptText = Field("", description="the civilian's first line (optional)")
    learning_objectives: Annotated[list[Text], Field(min_length=1)] = Field(
        description="what the trainee should practise")
    path: Path | None = Field(None, exclude=True)

    def context(self) -> str:
        """The scene text a responder gets: setting, dispatch, who the civilian is, and what
        escalates or calms them. No agitation (that changes per turn)."""
        p = self.persona
        lines = [_sentence(self.setting), f"Dispatch: {_sentence(self.dispatch)}",
                 f"The civilian: {p.name}, {p.age}. Now: {_sentence(p.emotional_state)} "
                 f"Speech: {_sentence(p.speaking_style)}",
                 f"Background: {_sentence(p.background)}"]
        if p.wants.strip():
            lines.append(f"Wants: {_sentence(p.wants)}")
        worse = _describe(p.escalated_by)
        if worse:
            lines.append(f"Gets worse with: {worse}.")
        better = _describe(p.calmed_by)
        if better:
            lines.append(f"Calms with: {better}.")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """The card as the card picker, `GET /api/cards` and `GET /v1/models` list it."""
        return {"id": self.id, "title": self.title, "call_type": self.call_type,
                "setting": self.setting, "dispatch": self.dispatch,
                "agitation_start": self.agitation_start,
                "learning_objectives": list(self.learning_objectives),
                "persona": {"name": self.persona.name, "age": self.persona.age,
                            "emotional_state": self.persona.emotional_state}}


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text[-1:] in ".!?" else f"{text}."


def _describe(t: Triggers) -> str:
    parts = [_NATURAL[x] for x in t.tactics]
    if t.phrases:
        parts.append("words like " + ", ".join(f'"{w}"' for w in t.phrases))
    return "; ".join(parts)


# --- loading ------------------------------------------------------------------------------

def builtin_dir() -> Path:
    """The folder of the cards shipped with deescalwild."""
    return Path(__file__).with_name("cards")


def load_card(path: str | Path) -> Card:
    """One card file. Raises `InputError(path, line, message)` on the first problem (by line)."""
    card, problems = _check_file(Path(path))
    if problems:
        raise problems[0]
    assert card is not None
    return card


def _check_file(path: Path) -> tuple[Card | None, list[InputError]]:
    """The card in `path` and every problem found in it (the card is None when there are any)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, [InputError(path, None, "not UTF-8 text")]
    except OSError as e:
        return None, [InputError(path, None, f"cannot read: {e.strerror or e}")]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        line = mark.line + 1 if mark is not None else None
        return None, [InputError(path, line, f"not valid YAML: {problem}")]
    if data is None:
        return None, [InputError(path, None, "empty file; expected a card (id, title, "
                                 "call_type, setting, dispatch, persona, ...)")]
    if not isinstance(data, dict):
        return None, [InputError(path, _line(node, ()), "expected a card (a mapping of keys "
                                 f"like id, title, persona), got {_kind(data)}")]
    problems = [InputError(path, line, msg) for line, msg in _duplicate_keys(node)]
    data = dict(data)
    schema = data.pop("schema", CARD_SCHEMA)
    if schema != CARD_SCHEMA:
        problems.append(InputError(path, _line(node, ("schema",)),
                                   f"schema: expected {CARD_SCHEMA!r}, got {schema!r}"))
    if "path" in data:
        problems.append(InputError(path, _line(node, ("path",)), _unknown_key(("path",))))
        data.pop("path")
    card = None
    try:
        card = Card.model_validate({**data, "path": path})
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            problems.append(InputError(path, _line(node, loc), _message(loc, err)))
    if card is not None:
        problems += [InputError(path, _line(node, loc), msg) for loc, msg in _cross_checks(card)]
    problems.sort(key=lambda p: p.line or 0)
    return (None if problems else card), problems


def _cross_checks(card: Card) -> list[tuple[tuple, str]]:
    """Checks across fields: a trigger on both sides, and the scene text's length."""
    out: list[tuple[tuple, str]] = []
    p = card.persona
    for i, t in enumerate(p.calmed_by.tactics):
        if t in p.escalated_by.tactics:
            out.append((("persona", "calmed_by", "tactics", i),
                        f"persona.calmed_by.tactics: {t!r} is also in escalated_by"))
    worse = {w.casefold() for w in p.escalated_by.phrases}
    for i, w in enumerate(p.calmed_by.phrases):
        if w.casefold() in worse:
            out.append((("persona", "calmed_by", "phrases", i),
                        f"persona.calmed_by.phrases: {w!r} is also in escalated_by"))
    n = len(card.context())
    if n > CONTEXT_LIMIT:
        fields = {("setting",): card.setting, ("dispatch",): card.dispatch,
                  ("persona", "background"): p.background, ("persona", "wants"): p.wants,
                  ("persona", "speaking_style"): p.speaking_style,
                  ("persona", "emotional_state"): p.emotional_state}
        longest = max(fields, key=lambda k: len(fields[k]))
        out.append((longest, f"the scene text a responder gets would be {n:,} characters, over "
                             f"the {CONTEXT_LIMIT:,} limit: shorten {'.'.join(longest)} "
                             f"({len(fields[longest]):,}) or the other descriptions"))
    return out


# --- error messages -----------------------------------------------------------------------

_EXPECTED = {("age",): "an integer 0-120", ("agitation_start",): "an integer 0-100"}


def _message(loc: tuple, err: dict[str, Any]) -> str:
    """`persona.age: expected an integer 0-120, got 'forty'` from a pydantic error."""
    where = _dotted(loc)
    kind = err["type"]
    got = err.get("input")
    if kind == "missing":
        return f"{where}: required field missing"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    expected = _EXPECTED.get(tuple(x for x in loc[-1:] if isinstance(x, str)))
    if expected and kind.startswith(("int_", "greater_than", "less_than")):
        return f"{where}: expected {expected}, got {_show(got)}"
    if kind in ("string_type", "str_type"):
        return f"{where}: expected text, got {_show(got)}"
    if kind == "string_too_short":
        return f"{where}: expected non-empty text"
    if kind == "string_too_long":
        return f"{where}: too long ({len(str(got))} characters; at most " \
               f"{err.get('ctx', {}).get('max_length')})"
    if kind == "list_type":
        return f"{where}: expected a list, got {_show(got)}"
    if kind == "too_short":
        return f"{where}: expected at least one item"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{where}: expected a mapping of keys, got {_show(got)}"
    if kind == "value_error":
        return f"{where}: {err.get('ctx', {}).get('error', err['msg'])}"
    msg = err["msg"][:1].lower() + err["msg"][1:]
    return f"{where}: expected {msg.removeprefix('input should be ')}, got {_show(got)}"


def _dotted(loc: tuple) -> str:
    out = ""
    for x in loc:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out or "card"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model a loc's last key belongs to (for listing the keys it knows)."""
    model: Any = Card
    for key in loc[:-1]:
        if isinstance(key, int):
            continue
        field = model.model_fields.get(key)
        inner = field.annotation if field else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


def _unknown_key(loc: tuple) -> str:
    model = _model_at(loc)
    key = str(loc[-1])
    msg = f"{_dotted(loc)}: unknown key"
    if model is None:
        return msg
    known = [k for k in model.model_fields if k != "path"]
    if model is Card:
        known.insert(0, "schema")
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{msg}{hint}; known: {', '.join(known)}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return repr(text)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)


def _kind(value: Any) -> str:
    return {list: "a list", str: "text"}.get(type(value), type(value).__name__)


# --- YAML line numbers --------------------------------------------------------------------

def _line(node: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the deepest YAML node on the path `loc` (a key's line for a mapping
    entry, an item's line for a list element); the nearest parent's line when the rest is
    missing (a missing field points at its parent mapping)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if not 0 <= key < len(node.value):
                return line
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _duplicate_keys(node: yaml.Node | None, path: str = "") -> Iterator[tuple[int, str]]:
    """A key given twice in one mapping (pyyaml would silently keep the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else "?"
            line = k.start_mark.line + 1
            where = f"{path}.{name}" if path else name
            if name in seen:
                yield line, f"{where}: duplicate key (first at line {seen[name]})"
            else:
                seen[name] = line
            yield from _duplicate_keys(v, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            yield from _duplicate_keys(v, f"{path}[{i}]")


# --- many cards ---------------------------------------------------------------------------

def _card_files(path: Path) -> tuple[list[Path], list[InputError]]:
    """A card file, or the card files under a folder (recursively, hidden entries skipped)."""
    if path.is_file():
        return [path], []
    if not path.is_dir():
        return [], [InputError(path, None, "no such file or folder")]
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        return [], [InputError(path, None, "no card files (*.yaml, *.yml) in this folder")]
    return files, []


def _id_line(card: Card) -> int | None:
    try:
        node = yaml.compose(card.path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return _line(node, ("id",))


def _collect(paths: Iterable[Path]) -> tuple[list[Card], list[InputError]]:
    """Every card under `paths` and every problem, including ids defined twice."""
    cards: dict[str, Card] = {}
    problems: list[InputError] = []
    seen_files: set[Path] = set()
    for root in paths:
        files, errs = _card_files(Path(root))
        problems += errs
        for f in files:
            if f.resolve() in seen_files:
                continue
            seen_files.add(f.resolve())
            card, errs = _check_file(f)
            problems += errs
            if card is None:
                continue
            if card.id in cards:
                first = cards[card.id]
                problems.append(InputError(f, _id_line(card), f"duplicate card id {card.id!r}: "
                                           f"also in {first.path}:{_id_line(first)}"))
                continue
            cards[card.id] = card
    return list(cards.values()), problems


def validate(paths: Sequence[str | Path]) -> list[InputError]:
    """Every problem in the card files and folders `paths` (empty when all are valid): schema
    errors with their line, unreadable files, empty folders, ids used twice."""
    return _collect(Path(p) for p in paths)[1]


class CardLibrary:
    """The cards a simulator can play: the built-in ones and the user's folders.

    A user card whose id is a built-in card's replaces it (listed in `overrides`, id -> the
    built-in file replaced); any other id used twice is an error."""

    def __init__(self, cards: Iterable[Card] = (), overrides: dict[str, Path] | None = None):
        self._cards: dict[str, Card] = {}
        for card in cards:
            if card.id in self._cards:
                raise InputError(card.path, None, f"duplicate card id {card.id!r}: also in "
                                 f"{self._cards[card.id].path}")
            self._cards[card.id] = card
        self._cards = dict(sorted(self._cards.items()))
        self.overrides: dict[str, Path] = dict(overrides or {})

    @classmethod
    def load(cls, dirs: Sequence[str | Path] = (), builtin: bool = True) -> CardLibrary:
        """The built-in cards (unless `builtin=False`) plus the cards in `dirs` (folders or
        files). Raises the first `InputError`, saying how many more there are."""
        cards: dict[str, Card] = {}
        if builtin:
            found, problems = _collect([builtin_dir()])
            _raise_first(problems)
            cards = {c.id: c for c in found}
        overrides: dict[str, Path] = {}
        if dirs:
            found, problems = _collect(Path(d) for d in dirs)
            _raise_first(problems)
            for card in found:
                if card.id in cards:
                    overrides[card.id] = cards[card.id].path  # type: ignore[assignment]
                cards[card.id] = card
        return cls(cards.values(), overrides)

    @property
    def ids(self) -> list[str]:
        return list(self._cards)

    def get(self, card_id: str) -> Card:
        try:
            return self._cards[card_id]
        except (KeyError, TypeError):
            raise NotFound(f"unknown card {card_id!r}; known: "
                           f"{', '.join(self._cards) or '(none)'}") from None

    def __contains__(self, card_id: object) -> bool:
        return card_id in self._cards

    def __iter__(self) -> Iterator[Card]:
        return iter(self._cards.values())

    def __len__(self) -> int:
        return len(self._cards)


def _raise_first(problems: list[InputError]) -> None:
    if not problems:
        return
    first = problems[0]
    if len(problems) > 1:
        more = len(problems) - 1
        first = InputError(first.path, first.line, f"{first.message} (and {more} more "
                           f"problem{'s' if more > 1 else ''}: run `deescalwild cards validate`)")
    raise first
