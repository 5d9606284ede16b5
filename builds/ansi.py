"""ANSI colour codes in build output → HTML spans with classes; everything else is escaped.

Stateful across chunks (a colour set in one WebSocket message applies to the next), and spans
never cross a newline, so the browser can split the HTML into lines and drop old ones.
"""

from __future__ import annotations

import re
from html import escape

COLOURS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")

# CSI (ESC [ params final), OSC (ESC ] ... BEL or ESC \), and two-character escapes.
_ESCAPE = re.compile(
    r"\x1b\[([0-9;:?<=>]*)[ -/]*([@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[@-Z\\-_]"
)
# An escape sequence cut off at the end of a chunk: held back until the next chunk.
_INCOMPLETE = re.compile(r"\x1b(?:\[[0-9;:?<=>]*[ -/]*|\][^\x07\x1b]*\x1b?)?\Z")
_MAX_PENDING = 256  # a longer "escape sequence" is junk: emit it as text


class AnsiState:
    """The SGR attributes in effect: foreground, background, bold, underline."""

    __slots__ = ("fg", "bg", "bold", "underline")

    def __init__(self) -> None:
        self.fg: str | None = None
        self.bg: str | None = None
        self.bold = False
        self.underline = False

    def classes(self) -> list[str]:
        out = []
        if self.bold:
            out.append("ansi-bold")
        if self.underline:
            out.append("ansi-underline")
        if self.fg:
            out.append(f"ansi-{self.fg}")
        if self.bg:
            out.append(f"ansi-bg-{self.bg}")
        return out

    def codes(self) -> str:
        """The state as SGR parameters ("1;31"), to resume a conversion elsewhere."""
        out = []
        if self.bold:
            out.append("1")
        if self.underline:
            out.append("4")
        if self.fg:
            out.append(_colour_code(self.fg, 30, 90))
        if self.bg:
            out.append(_colour_code(self.bg, 40, 100))
        return ";".join(out)

    def apply(self, params: str) -> None:
        numbers = []
        for part in params.replace(":", ";").split(";"):
            try:
                numbers.append(int(part) if part else 0)
            except ValueError:
                return
        if not numbers:
            numbers = [0]
        i = 0
        while i < len(numbers):
            n = numbers[i]
            if n == 0:
                self.__init__()
            elif n == 1:
                self.bold = True
            elif n == 22:
                self.bold = False
            elif n == 4:
                self.underline = True
            elif n == 24:
                self.underline = False
            elif 30 <= n <= 37:
                self.fg = COLOURS[n - 30]
            elif 90 <= n <= 97:
                self.fg = "bright-" + COLOURS[n - 90]
            elif n == 39:
                self.fg = None
            elif 40 <= n <= 47:
                self.bg = COLOURS[n - 40]
            elif 100 <= n <= 107:
                self.bg = "bright-" + COLOURS[n - 100]
            elif n == 49:
                self.bg = None
            elif n in (38, 48):
                # 256-colour and true-colour forms are not rendered; skip their arguments.
                if i + 1 < len(numbers) and numbers[i + 1] == 5:
                    i += 2
                elif i + 1 < len(numbers) and numbers[i + 1] == 2:
                    i += 4
            i += 1


def _colour_code(name: str, base: int, bright_base: int) -> str:
    if name.startswith("bright-"):
        return str(bright_base + COLOURS.index(name[7:]))
    return str(base + COLOURS.index(name))


class AnsiConverter:
    """Feed text chunk by chunk; get HTML. ``pending`` is text held back (an escape sequence
    cut at the end of a chunk); ``state.codes()`` is the colour state after what was emitted."""

    def __init__(self, codes: str = "") -> None:
        self.state = AnsiState()
        if codes and re.fullmatch(r"[0-9;]{1,64}", codes):
            self.state.apply(codes)
        self.pending = ""

    def feed(self, text: str) -> str:
        text = self.pending + text
        self.pending = ""
        cut = _INCOMPLETE.search(text)
        if cut is not None and len(text) - cut.start() <= _MAX_PENDING:
            self.pending = text[cut.start() :]
            text = text[: cut.start()]
        out: list[str] = []
        position = 0
        for match in _ESCAPE.finditer(text):
            self._text(text[position : match.start()], out)
            if match.group(2) == "m":
                self.state.apply(match.group(1) or "")
            position = match.end()
        self._text(text[position:], out)
        return "".join(out)

    def _text(self, text: str, out: list[str]) -> None:
        if not text:
            return
        # A lone ESC that is not a sequence, CR and other C0 controls but tab/newline: not shown.
        text = "".join(ch for ch in text if ch >= " " or ch in "\n\t")
        classes = self.state.classes()
        if not classes:
            out.append(escape(text, quote=False))
            return
        opening = f'<span class="{" ".join(classes)}">'
        # Spans never cross a newline: every line is a well-formed fragment on its own.
        for i, line in enumerate(text.split("\n")):
            if i:
                out.append("\n")
            if line:
                out.append(opening + escape(line, quote=False) + "</span>")


def ansi_to_html(text: str) -> str:
    """One-shot conversion (an incomplete trailing escape sequence is dropped)."""
    return AnsiConverter().feed(text)
