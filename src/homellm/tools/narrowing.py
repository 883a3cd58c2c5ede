"""What a question's words decide about a table query, before the model fills it: which columns it
names, which operation, order and count it asks for, which comparison and which bounds.

A 135M model offered every column and operation fills the query with noise; offered only what the
question names, it fills it right. Pure text functions: the table gives its column names and types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TOP = 20

# Words in column names that name a unit or join words, not what the column holds.
_FILLER = frozenset({"in", "of", "per", "the", "a", "lbs", "lb", "kg", "g", "mm", "cm", "m", "km", "kb", "mb",
                     "gb", "usd", "eur", "pct", "num", "no", "id"})
# Abbreviations in column names and the words people use for them.
_ABBREVIATIONS = {"temp": "temperature", "max": "maximum", "min": "minimum", "avg": "average", "qty": "quantity",
                  "pct": "percent", "precip": "precipitation", "lat": "latitude", "lon": "longitude",
                  "lng": "longitude", "pop": "population", "yr": "year", "dept": "department", "amt": "amount",
                  "cnt": "count", "desc": "description", "addr": "address", "ret": "return"}

_FEWEST = r"(fewest|least|smallest|lowest|minimum|min|shortest|lightest|coldest|cheapest|earliest)"
_MOST = r"(most|largest|biggest|highest|maximum|max|longest|heaviest|warmest|greatest|latest)"
_AVERAGE = r"(average|mean)"
_TOTAL = r"(total|sum)"
_NUMBER = r"-?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class AskedOperation:
    """What a question's words decide about the query: the operations left, whether it is per group,
    the order of the groups, and how many rows."""

    operations: tuple[str, ...]
    grouped: bool = False
    order: str = "desc"
    limit: int | None = None


def words(text: str) -> list[str]:
    """Lower-case words; camelCase and snake_case split ("petalLength" -> petal, length)."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def singular(word: str) -> str:
    """A plural's singular, near enough for matching ("categories" -> category, "boxes" -> box)."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def near(part: str, asked: set[str]) -> bool:
    """A word of a column's name among the question's words: as it is, singular or plural, a shared long
    stem ("flipper"), or spelled out ("temp" as temperature)."""
    stem = singular(part)
    spelled = _ABBREVIATIONS.get(part)
    return any(w == part or singular(w) == stem or (len(part) >= 5 and w.startswith(part[:5])) or
               (spelled is not None and (w == spelled or singular(w) == spelled)) for w in asked)


def names_column(question: str, column: str) -> bool:
    """Whether the question names the column: its whole name, or the words that say what it holds
    (`installed size` for installed_size_kb, `maximum temperature` for temp_max)."""
    asked = " ".join(words(question))
    whole = " ".join(words(column))
    if whole and re.search(rf"(?<![a-z0-9]){re.escape(whole)}(?![a-z0-9])", asked):
        return True
    parts = [p for p in words(column) if p not in _FILLER and not p.isdigit()] or words(column)
    return bool(parts) and all(near(p, set(asked.split())) for p in parts[:2])


def asked_operation(question: str, names_a_number: bool = False) -> AskedOperation | None:
    """The operations a question's words leave, or None when they do not decide (every operation stays).

    `names_a_number`: the question names a numeric column besides the one it groups or labels by, so
    "which ... has the largest X" asks for the row with the largest X, where "which ... has the most"
    asks for the largest group.
    """
    q = question.lower()
    # The first extreme word decides: "the highest total minimum temperature" asks for the highest.
    first = re.search(rf"\b({_MOST}|{_FEWEST})\b", q)
    low = first is not None and re.fullmatch(_FEWEST, first.group(1)) is not None
    order = "asc" if low else "desc"
    count = top_count(question)
    if count is not None:
        return AskedOperation(("bottom",) if low else ("top",), order=order, limit=count)
    if re.search(r"\bhow many (distinct|different|unique)\b|\bnumber of (distinct|different|unique)\b", q):
        return AskedOperation(("count_distinct",))
    extreme = re.search(rf"\b({_MOST}|{_FEWEST})\b", q) is not None
    often = re.search(r"\b(often|common|frequent|frequently|appears?|occurs?)\b|\bnumber of\b|\bcount of\b", q)
    if which_word(question) is not None and (extreme or often):
        if re.search(rf"\b{_AVERAGE}\b", q):
            return AskedOperation(("mean",), grouped=True, order=order, limit=1)
        if re.search(rf"\b{_TOTAL}\b", q):
            return AskedOperation(("sum",), grouped=True, order=order, limit=1)
        if names_a_number and not often:
            return AskedOperation(("argmin",) if low else ("argmax",), order=order)
        return AskedOperation(("count",), grouped=True, order=order, limit=1)
    if re.search(r"\bhow many\b|\bnumber of\b|\bcount\b", q):
        return AskedOperation(("count",), grouped=asks_per_group(q))
    if re.search(rf"\b{_AVERAGE}\b", q):
        return AskedOperation(("mean",), grouped=asks_per_group(q))
    if re.search(rf"\b{_TOTAL}\b", q):
        return AskedOperation(("sum",), grouped=asks_per_group(q))
    if re.search(r"\bmedian\b", q):
        return AskedOperation(("median",))
    if extreme and not asks_per_group(q):
        return AskedOperation(("min",) if low else ("max",), order=order)
    return _asked_elsewhere(q)


# The commonest question words of French, German, Spanish and Chinese, read only when no English one
# decides: asked in another language, a small model offered every operation invents the query.
# Left out: words that are English too ("media", "mayor") and those that ask for a group ("最多").
_ELSEWHERE = (
    ("mean", r"\bmoyen(ne)?s?\b|\bdurchschnitt\w*|\bmittelwert\w*|\bpromedio\b|平均"),
    ("sum", r"\bsomme\b|\bsumme\b|\bsuma\b|总和|合计|总计"),
    # "How many", not "how much" ("combien pèse", "wie viel", "是多少" ask for a value).
    ("count", r"\bcombien d(e\b|u\b|['’])|\bwie ?viele\b|\banzahl\b|\bcu[aá]nt[oa]s\b|有多少|多少[个只位条家种名]|"
              r"几[个只位条家种名]|数量|数目"),
    ("max", r"\bmaximale?s?\b|\bplus (grand|élevé|lourd|long|haut)e?s?\b|\b(größte|höchste|schwerste|längste)\w*|"
            r"\bmáxim[oa]s?\b|最大|最高|最重|最长"),
    ("min", r"\bminimale?s?\b|\bplus (petit|bas|léger|court)e?s?\b|\b(kleinste|niedrigste|leichteste|kürzeste)\w*|"
            r"\bmínim[oa]s?\b|\bmenor(es)?\b|最小|最低|最轻|最短"),
)


def _asked_elsewhere(q: str) -> AskedOperation | None:
    """The operation a question in French, German, Spanish or Chinese asks for, over the whole table."""
    for operation, pattern in _ELSEWHERE:
        if re.search(pattern, q):
            return AskedOperation((operation,), order="asc" if operation == "min" else "desc")
    return None


def top_count(question: str) -> int | None:
    """N in "the 5 largest", "top 3", "which 5 names have the smallest": how many rows are asked for."""
    q = question.lower()
    found = (re.search(rf"\b(?:{_MOST}|{_FEWEST}|top|bottom|first|last)\s+(\d{{1,2}})\b", q) or
             re.search(rf"\b(\d{{1,2}})\s+(?:[a-z_]+\s+){{0,4}}?(?:with the\s+|have the\s+|has the\s+)?"
                       rf"(?:{_MOST}|{_FEWEST})\b", q))
    if found is None:
        return None
    number = int(next(g for g in found.groups() if g and g.isdigit()))
    return max(1, min(number, MAX_TOP)) if number >= 2 or "top" in q else None


_WHICH = (
    r"\b(?:which|what)\s+(?:\d{1,2}\s+)?([a-z_]+(?:\s[a-z_]+)?)\s+(?:has|have|had|is|are|was|were|appears?|"
    r"occurs?|with|of)\b",
    r"\b(?:which|what)\s+(?:\d{1,2}\s+)?([a-z_]+)",
    r"\bthe\s+([a-z_]+)\s+of\s+the\s+(?:\d{1,2}\s+)?[a-z_]+\s+(?:with|that|which|whose)\b",
    r"\b(?:give|list|name|show)\s+(?:me\s+)?the\s+([a-z_]+(?:\s[a-z_]+)?)\s+of\b",
)
_NOT_A_NAME = frozenset({"is", "are", "was", "were", "s", "the", "a", "an"})


def which_word(question: str) -> str | None:
    """The word a question asks for a row or group by: "which island", "what year has", "the date of the"."""
    q = question.lower()
    for pattern in _WHICH:
        for found in re.finditer(pattern, q):
            word = found.group(1)
            if word.split()[0] not in _NOT_A_NAME:
                return word
    return None


def asks_per_group(question: str) -> bool:
    """Whether the question wants an answer per group ("for each island", "per year", "by region")."""
    return bool(re.search(r"\b(each|per|by|every|group|breakdown)\b", question.lower()))


_COMPARISONS = (
    (rf"\bbetween\s+{_NUMBER}\s+and\s+{_NUMBER}|\bfrom\s+{_NUMBER}\s+to\s+{_NUMBER}", ["between"]),
    (rf"\bat least\s+{_NUMBER}|{_NUMBER}\s+or more\b", [">="]),
    (rf"\bat most\s+{_NUMBER}|{_NUMBER}\s+or (less|fewer)\b", ["<="]),
    (rf"\b(more|greater|larger|higher|bigger|heavier|longer|over|above|exceeds?|exceeding)\s+(than\s+)?{_NUMBER}",
     [">"]),
    (rf"\b(less|fewer|smaller|lower|shorter|lighter|under|below)\s+(than\s+)?{_NUMBER}", ["<"]),
)


def asked_comparison(question: str) -> list[str] | None:
    """The comparison a question makes with a number it gives ("between 10 and 20", "more than 5")."""
    q = question.lower()
    for pattern, ops in _COMPARISONS:
        if re.search(pattern, q):
            return ops
    return None


def asks_contains(question: str) -> bool:
    """Whether the question asks for text within a value ('containing "vers"', '"toyo" in their name')."""
    return bool(quoted(question)) and bool(re.search(r"\bcontain(s|ing)?\b|\bin (their|its|the)\b|\bwith\b",
                                                     question.lower()))


def asks_negation(question: str) -> bool:
    """Whether the question excludes a value ("not", "except", "other than", "excluding")."""
    return bool(re.search(r"\b(not|isn't|aren't|except|excluding|other than|apart from|besides|without)\b|n't\b",
                          question.lower()))


def quoted(question: str) -> list[str]:
    """The texts a question puts in quotes."""
    return [a or b for a, b in re.findall(r'"([^"]+)"|\u201c([^\u201d]+)\u201d', question)]


def numbers(question: str, leave_out: int | None = None) -> list[float | int]:
    """The numbers a question gives, but the count of rows it asks for ("the 5 largest")."""
    found = re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])", question)
    values = {float(n) if "." in n else int(n) for n in found}
    if leave_out is not None:
        values.discard(leave_out)
    return sorted(values, key=float)
