"""Identifier syntax: parse a handle once, at the edge, into an immutable value.

A handle is ``prefix/suffix``. Prefixes are dot-separated segments (``88.118.8``) and are
ASCII-case-insensitive; suffixes may hold any printable character, dots, colons and
slashes included, and are case-insensitive unless the node is configured otherwise.
The normalised ``key`` is what stores and caches are keyed by.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocol.errors import InvalidHandle, NotResponsible

NA_PREFIX = "0.NA"
MAX_HANDLE_BYTES = 2048  # Handle wire limit on any handle
MAX_REGISTERED_CHARS = 255  # SNMS limit for a registered identifier
MAX_PREFIX_CHARS = 64

_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


def ascii_upper(text: str) -> str:
    """Upper-case ASCII letters only, as handle.net's case-insensitive mode does."""
    return text.upper() if text.isascii() else text.translate(_ASCII_UPPER)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]|\s")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


@dataclass(frozen=True, slots=True)
class Handle:
    """A validated, normalised handle."""

    prefix: str  # normalised: ASCII upper case
    suffix: str  # as written by the registrant
    key: str  # normalised lookup key: "PREFIX/SUFFIX-KEY"

    @property
    def text(self) -> str:
        return f"{self.prefix}/{self.suffix}"

    @property
    def is_prefix_handle(self) -> bool:
        return self.prefix == NA_PREFIX

    @property
    def zone(self) -> str:
        """The prefix whose server is responsible for this handle.

        ``88.118.8/X`` is served by whoever serves ``88.118.8``; the prefix handle
        ``0.NA/88.118.8`` is kept by the node that homes ``88.118.8`` itself.
        """
        return self.key.partition("/")[2] if self.is_prefix_handle else self.prefix

    def __str__(self) -> str:
        return self.text

    @classmethod
    def of_key(cls, key: str) -> Handle:
        """The handle a normalised ``key`` names, without parsing it again: a key is only ever made
        from a parsed handle. Its suffix is the key's (in upper case unless the node is case-sensitive)."""
        prefix, _, suffix = key.partition("/")
        return cls(prefix, suffix, key)


def parse_prefix(text: str) -> str:
    """Validate a prefix (``88.118.8``) and return its normalised form."""
    if not text:
        raise InvalidHandle("prefix is empty")
    if len(text) > MAX_PREFIX_CHARS:
        raise InvalidHandle(f"prefix is longer than {MAX_PREFIX_CHARS} characters")
    if _CONTROL_OR_SPACE.search(text):
        raise InvalidHandle("prefix contains control or white-space characters")
    if "/" in text:
        raise InvalidHandle("prefix contains '/'")
    if "" in text.split("."):
        raise InvalidHandle(f"prefix {text!r} has an empty segment")
    return ascii_upper(text)


def parse_handle(text: str, *, case_sensitive: bool = False) -> Handle:
    """Parse ``prefix/suffix``; raise InvalidHandle saying what is wrong."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_HANDLE_BYTES:
        raise InvalidHandle(f"handle is longer than {MAX_HANDLE_BYTES} bytes")
    if _has_control(text):
        raise InvalidHandle("handle contains control characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidHandle("handle is not valid UTF-8") from None
    prefix_text, slash, suffix = text.partition("/")
    if not slash:
        raise InvalidHandle(f"handle {text!r} has no '/' between prefix and suffix")
    prefix = parse_prefix(prefix_text)
    if not suffix:
        raise InvalidHandle(f"handle {text!r} has an empty suffix")
    if prefix == NA_PREFIX:
        suffix = parse_prefix(suffix)  # a prefix handle names a prefix
        return Handle(prefix, suffix, f"{prefix}/{suffix}")
    suffix_key = suffix if case_sensitive else ascii_upper(suffix)
    return Handle(prefix, suffix, f"{prefix}/{suffix_key}")


def prefix_handle(prefix: str) -> Handle:
    """The handle ``0.NA/<prefix>`` that names a prefix."""
    norm = parse_prefix(prefix)
    return Handle(NA_PREFIX, norm, f"{NA_PREFIX}/{norm}")


def is_at_or_under(prefix: str, ancestor: str) -> bool:
    """True when normalised ``prefix`` equals ``ancestor`` or is derived from it."""
    return prefix == ancestor or prefix.startswith(ancestor + ".")


def check_responsible(zone: str, node_prefix: str, shown: str, *, handle: str | None = None) -> None:
    """Raise NotResponsible unless ``zone`` is ``node_prefix`` or derived from it."""
    if not is_at_or_under(zone, node_prefix):
        raise NotResponsible(f"this node serves prefix {node_prefix}; {shown} is not under it", handle=handle)


def check_registrable(handle: Handle) -> None:
    """Limits that apply to handles being registered, not merely looked up."""
    if len(handle.text) > MAX_REGISTERED_CHARS:
        raise InvalidHandle(f"handle is longer than {MAX_REGISTERED_CHARS} characters", handle=handle.text)
