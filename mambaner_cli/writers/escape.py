"""Length-preserving clean-up of text for the output formats.

Every replacement here swaps one code point for one code point, so document offsets computed on the
original text stay valid in the written file: a mention at ``[start, end)`` still covers the same
characters after clean-up.
"""

from __future__ import annotations

import re

# Characters XML 1.0 forbids anywhere (even as character references): C0 controls other than tab,
# newline and carriage return, lone surrogates, and the two non-characters U+FFFE and U+FFFF.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Lone surrogates (left by decoding with surrogateescape) cannot be encoded as UTF-8 at all.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Everything str.splitlines() treats as a line end, plus tab: any of them would break a line- or
# tab-separated format (PubTator, CoNLL).
_LINE_BREAKING = re.compile("[\t\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029]")


def unicode_safe(text: str) -> str:
    """Replace lone surrogates by U+FFFD so that the text encodes as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


def xml_safe(text: str) -> str:
    """Replace every character illegal in XML 1.0 by a space (lone surrogates by U+FFFD)."""
    if not _XML_ILLEGAL.search(text):
        return text
    return _XML_ILLEGAL.sub(lambda m: "\ufffd" if "\ud800" <= m.group() <= "\udfff" else " ", text)


def one_line(text: str) -> str:
    """Replace tabs and line breaks by spaces, and lone surrogates by U+FFFD."""
    return unicode_safe(_LINE_BREAKING.sub(" ", text))
