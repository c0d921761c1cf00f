"""Python checks on code fragments: syntax, compilation and AST equality in a fixed context.

A target is a region of a source file (one or more hunks' fixed text), usually indented and
often not a whole statement list at module level. To check it as Python without rewriting its
whitespace, it is placed under a *wrapper*: one header line per indentation level below the
fragment's first line (`if True:`, `def _hrm_w():`, ...), so an indented method body stays
indented exactly as written. The wrapper is chosen on the REFERENCE (the smallest one under
which the reference compiles) and the prediction is judged under that same wrapper; a
reference that compiles under no wrapper is excluded and counted, never scored.

Nothing here executes code: `compile()` builds a code object that is discarded.
"""

from __future__ import annotations

import ast
import io
import tokenize
import warnings
from dataclasses import dataclass
from functools import lru_cache

from hrm.safe_ast import compile_source, parse

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = set(_OPEN.values())

# Header kinds for the innermost wrapper level, smallest first. Outer levels use `if True:`
# except where a kind needs an enclosing function (the loop variants), which takes level 0.
_INNER_KINDS: tuple[tuple[str, ...], ...] = (
    ("if True:",),
    ("def _hrm_w():",),
    ("async def _hrm_w():",),
    ("class _HrmW:",),
    ("for _hrm_w in ():",),
    ("def _hrm_w():", "for _hrm_w in ():"),
    ("async def _hrm_w():", "for _hrm_w in ():"),
    ("def _hrm_w():", "def _hrm_v():"),
)


@dataclass(frozen=True)
class Wrapper:
    """Lines placed around a fragment, never inside it; empty: the bare text.

    `headers` open the enclosing blocks (one per indentation level below the first line);
    `prefix` supplies the statement a leading `else:`/`except:` clause continues; `footer`
    gives a trailing block opener (`class X(Base):` at the region's end) its body.
    """

    headers: tuple[str, ...] = ()
    prefix: str = ""
    footer: str = ""

    def apply(self, fragment: str) -> str:
        head = "".join(h + "\n" for h in self.headers) + self.prefix
        if not self.footer:
            return head + fragment
        sep = "" if fragment.endswith("\n") else "\n"
        return head + fragment + sep + self.footer

    @property
    def description(self) -> str:
        parts = [h.strip() for h in self.headers]
        if self.prefix:
            parts.append("+" + self.prefix.strip().split("\n")[0])
        if self.footer:
            parts.append("+pass")
        return " / ".join(parts) or "module level"


def is_blank(text: str) -> bool:
    """An empty or whitespace-only output: never a valid fix when the reference is not blank."""
    return not text.strip()


def _code_lines(fragment: str) -> list[str]:
    return [ln for ln in fragment.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _first_indent(fragment: str) -> str:
    lines = _code_lines(fragment)
    return _indent_of(lines[0]) if lines else ""


def _levels(indent: str) -> list[str]:
    """Indentation strings of the enclosing blocks of a line indented by `indent`."""
    if not indent:
        return []
    if "\t" in indent:
        return [indent[:i] for i in range(len(indent))]
    unit = 4 if len(indent) % 4 == 0 else (2 if len(indent) % 2 == 0 else len(indent))
    return [" " * k for k in range(0, len(indent), unit)]


_CLAUSE_PREFIX = {"else": "if True:", "elif": "if True:", "except": "try:", "finally": "try:"}


def _prefix(fragment: str) -> str:
    """The opener a leading dangling clause (`else:`, `elif ...:`, `except ...:`) continues."""
    lines = _code_lines(fragment)
    if not lines:
        return ""
    first = lines[0].lstrip()
    word = first.split(None, 1)[0].rstrip(":") if first.split() else ""
    if word not in _CLAUSE_PREFIX:
        return ""
    indent = _indent_of(lines[0])
    return f"{indent}{_CLAUSE_PREFIX[word]}\n{indent}    pass\n"


def _footer(fragment: str) -> str:
    """A `pass` body for a block opener on the fragment's last code line."""
    lines = _code_lines(fragment)
    if not lines or not lines[-1].split("#", 1)[0].rstrip().endswith(":"):
        return ""
    return f"{_indent_of(lines[-1])}    pass\n"


def candidate_wrappers(fragment: str) -> list[Wrapper]:
    """Wrappers for `fragment`, smallest first: bare, then headers matching its first indent.

    Each header variant is tried without and then with the clause prefix / `pass` footer the
    fragment's first and last lines call for.
    """
    levels = _levels(_first_indent(fragment))
    header_sets: list[tuple[str, ...]] = [()] if not levels else []
    for kinds in _INNER_KINDS if levels else ():
        if len(kinds) > len(levels):
            continue
        # Outer levels are `if True:`; the listed kinds occupy level 0 (an enclosing
        # function, when there is one) and the innermost level.
        heads = ["if True:"] * len(levels)
        if len(kinds) == 1:
            heads[-1] = kinds[0]
        else:
            heads[0], heads[-1] = kinds[0], kinds[1]
        header_sets.append(tuple(ind + h for ind, h in zip(levels, heads, strict=True)))
    prefix, footer = _prefix(fragment), _footer(fragment)
    extras = [("", "")]
    if prefix or footer:
        extras.append((prefix, footer))
    return [Wrapper(h, p, f) for p, f in extras for h in header_sets]


@dataclass(frozen=True)
class TokenScan:
    """What tokenizing a fragment found. `ok` is False on a stray character, an unterminated
    single-line string, a mismatched bracket pair or an inconsistent dedent."""

    ok: bool
    leading_closers: tuple[str, ...] = ()
    """Closing brackets with no opener in the fragment (it starts inside a bracket)."""
    unclosed: tuple[str, ...] = ()
    """Openers still open at the end (it stops inside a bracket)."""
    open_string: bool = False
    """It ends inside a triple-quoted string."""

    @property
    def signature(self) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
        return self.leading_closers, self.unclosed, self.open_string


@lru_cache(maxsize=1024)
def scan_tokens(fragment: str) -> TokenScan:
    """Tokenize `fragment` (under indentation headers for its first line) and track brackets.
    Cached: a row's reference is scanned for every system and search candidate."""
    source = candidate_wrappers(fragment)[0].apply(fragment)
    stack: list[str] = []
    leading: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.ERRORTOKEN and tok.string.strip():
                return TokenScan(False)
            if tok.type != tokenize.OP:
                continue
            if tok.string in _OPEN:
                stack.append(tok.string)
            elif tok.string in _CLOSE:
                if not stack:
                    leading.append(tok.string)
                elif _OPEN[stack.pop()] != tok.string:
                    return TokenScan(False)
    except tokenize.TokenError as err:
        # EOF inside brackets is described by `unclosed`; EOF inside a string is recorded.
        if "string" in str(err.args[0]):
            return TokenScan(True, tuple(leading), tuple(stack), open_string=True)
    except (IndentationError, SyntaxError, ValueError, RecursionError):
        return TokenScan(False)
    return TokenScan(True, tuple(leading), tuple(stack))


def compiles(source: str) -> bool:
    """True when `source` compiles to a code object (parser and symbol-table errors included)."""
    try:
        # Model output is untrusted and often odd: its SyntaxWarnings (invalid escapes, `1if`)
        # are not the evaluation's to print.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile_source(source, "<hrm-fragment>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True


def normalized_ast(source: str) -> str | None:
    """AST dump without positions (layout and comments ignored); None when it does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None
    return ast.dump(tree, annotate_fields=True, include_attributes=False)


def reference_wrapper(reference: str) -> Wrapper | None:
    """The smallest wrapper under which the reference compiles; None when there is none."""
    if is_blank(reference):
        return None
    for wrapper in candidate_wrappers(reference):
        if compiles(wrapper.apply(reference)):
            return wrapper
    return None


def syntax_valid(prediction: str, reference: str) -> bool | None:
    """Fragment-aware token-level validity of the prediction; None when the reference is not.

    Both tokenize (closed single-line strings, no stray characters, matching bracket pairs)
    and the prediction starts/ends inside the same brackets and strings as the reference does:
    a region cut from a file may begin inside a call's argument list, and the prediction must
    close exactly what the reference closes. A blank prediction is invalid.
    """
    ref = scan_tokens(reference)
    if not ref.ok or is_blank(reference):
        return None
    if is_blank(prediction):
        return False
    pred = scan_tokens(prediction)
    return pred.ok and pred.signature == ref.signature
