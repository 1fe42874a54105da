"""Item titles and descriptions for the synthetic shop, with per-token relevance labels.

A description mixes one *attribute sentence* (the product's kind, colour and pattern: what users
choose by) with *marketing filler* (shipping, offers, the price: what no user's taste depends
on), in a shuffled order. Every text is built as a list of word tokens with a label each, so
the labels match :func:`word_tokens` of the final string exactly.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["word_tokens", "TOKEN_PATTERN", "KIND_WORDS", "COLOUR_WORDS", "PATTERN_WORDS",
           "compose_text"]

#: How texts are split into word tokens: words (with inner ``-``, ``'`` or ``.``, so
#: ``polka-dot`` and ``24.99`` stay whole) and single punctuation marks.
TOKEN_PATTERN = r"[A-Za-z0-9]+(?:['.\-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]"
_TOKEN_RE = re.compile(TOKEN_PATTERN)

# Words that name an attribute value. Each is relevant wherever it appears.
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "shirt": ("shirt", "tee", "t-shirt"),
    "mug": ("mug", "cup"),
    "shoe": ("shoe", "sneaker", "trainer"),
    "hat": ("hat", "fedora"),
    "bag": ("bag", "handbag", "tote"),
    "lamp": ("lamp", "lampshade"),
    "bottle": ("bottle", "flask"),
    "dress": ("dress", "frock"),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",), "blue": ("blue",), "green": ("green",), "yellow": ("yellow",),
    "purple": ("purple",), "orange": ("orange",), "pink": ("pink",), "teal": ("teal",),
    "brown": ("brown",), "black": ("black",),
}
PATTERN_WORDS: dict[str, tuple[str, ...]] = {
    "solid": ("solid", "plain"),
    "stripes": ("striped", "stripy", "pinstriped"),
    "dots": ("dotted", "spotted", "polka-dot"),
    "checks": ("checked", "checkered", "plaid"),
}

# Attribute sentences: {c} colour, {p} pattern adjective, {k} kind noun. Only slot words are
# relevant; the template words around them are not.
_ATTRIBUTE_TEMPLATES = (
    "{c} {p} {k} .",
    "a {p} {k} in {c} .",
    "this {k} comes in {c} with a {p} finish .",
    "our {c} {k} has a {p} design .",
    "{p} {k} , colour : {c} .",
    "the {k} is {c} and {p} .",
)
# Marketing filler; {price} is the item's price. None of it is relevant.
_FILLER = (
    "free shipping on all orders .",
    "limited offer !",
    "best seller .",
    "only $ {price} .",
    "now $ {price} , order today !",
    "ships within 2 days .",
    "rated 4.8 by our customers .",
    "gift wrapping available .",
    "easy 30-day returns .",
    "new arrival .",
    "while stocks last !",
    "exclusive online deal .",
    "members save 10 % .",
    "buy two , get one free .",
)
_BRANDS = ("nordby", "acme", "lumo", "vesta", "kiro", "mondo", "pellam", "oska")


def word_tokens(text: str) -> list[tuple[str, int, int]]:
    """Split ``text`` into word tokens with character spans ``(token, start, end)``.

    Example:
        >>> word_tokens("Red polka-dot mug, $24.99!")
        [('Red', 0, 3), ('polka-dot', 4, 13), ('mug', 14, 17), (',', 17, 18), ('$', 19, 20), ('24.99', 20, 25), ('!', 25, 26)]
    """
    return [(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def _join(tokens: list[str]) -> str:
    """Join tokens with spaces, attaching punctuation the way prose writes it."""
    out = ""
    for i, tok in enumerate(tokens):
        if i == 0:
            out = tok
        elif tok in {".", ",", "!", ":", "%"} or out.endswith("$"):
            out += tok
        else:
            out += " " + tok
    return out


def _fill(template: str, slots: dict[str, str]) -> list[tuple[str, int]]:
    """Template words → ``(token, label)``; slot words are relevant (1)."""
    out: list[tuple[str, int]] = []
    for word in template.split():
        m = re.fullmatch(r"\{(\w+)\}", word)
        if m and m.group(1) in slots:
            out.append((slots[m.group(1)], 1 if m.group(1) in {"c", "p", "k"} else 0))
        else:
            out.append((word, 0))
    return out


def _capitalise(pairs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Upper-case the first letter of every sentence."""
    out, start = [], True
    for tok, lab in pairs:
        if start and tok[:1].isalpha():
            tok, start = tok[0].upper() + tok[1:], False
        elif tok in {".", "!"}:
            start = True
        out.append((tok, lab))
    return out


def _labelled(pairs: list[tuple[str, int]]) -> tuple[str, list[int]]:
    text = _join([t for t, _ in pairs])
    # The joined text re-tokenises to exactly the same tokens (checked here, not assumed).
    toks = [t for t, _, _ in word_tokens(text)]
    assert toks == [t for t, _ in pairs], (toks, pairs)
    return text, [lab for _, lab in pairs]


def compose_text(
    kind: str, colour: str, pattern: str, price: float, rng: np.random.Generator,
    n_filler: tuple[int, int],
) -> tuple[str, list[int], str, list[int]]:
    """Title and description of one item, each with per-token relevance labels.

    Args:
        kind: Product kind (a key of ``KIND_WORDS``).
        colour: Colour name (a key of ``COLOUR_WORDS``).
        pattern: Pattern name (a key of ``PATTERN_WORDS``).
        price: Price shown in filler sentences.
        rng: Random generator (consumed).
        n_filler: Inclusive range of filler sentences in the description.

    Returns:
        ``(title, title_labels, text, text_labels)``; labels align with :func:`word_tokens`.

    Example:
        >>> t, tl, d, dl = compose_text("mug", "red", "dots", 9.99, np.random.default_rng(0), (1, 1))
        >>> len(tl) == len(word_tokens(t)) and len(dl) == len(word_tokens(d))
        True
    """
    def pick(options: tuple[str, ...]) -> str:
        return options[int(rng.integers(len(options)))]

    slots = {"c": pick(COLOUR_WORDS[colour]), "p": pick(PATTERN_WORDS[pattern]),
             "k": pick(KIND_WORDS[kind]), "price": f"{price:.2f}"}
    brand = pick(_BRANDS)
    title = _capitalise([(brand, 0)] + _fill("{c} {p} {k}", slots))
    sentences = [_fill(pick(_ATTRIBUTE_TEMPLATES), slots)]
    lo, hi = n_filler
    n = int(rng.integers(lo, hi + 1))
    for j in rng.choice(len(_FILLER), size=min(n, len(_FILLER)), replace=False):
        sentences.append(_fill(_FILLER[int(j)], slots))
    order = rng.permutation(len(sentences))
    body = [pair for j in order for pair in sentences[int(j)]]
    t_text, t_labels = _labelled(title)
    d_text, d_labels = _labelled(_capitalise(body))
    return t_text, t_labels, d_text, d_labels
