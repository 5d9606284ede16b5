"""ANSI colour codes in build output become spans with classes; everything else is escaped."""

from __future__ import annotations

from builds.ansi import AnsiConverter, ansi_to_html


def test_plain_text_is_escaped_and_script_tags_never_survive():
    html = ansi_to_html('<script>alert("x")</script> & <b>bold</b>\n')
    assert html == '&lt;script&gt;alert("x")&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;\n'
    assert "<script" not in html and "<b>" not in html


def test_script_inside_a_coloured_span_is_escaped_too():
    html = ansi_to_html("\x1b[31m<script>x</script>\x1b[0m")
    assert html == '<span class="ansi-red">&lt;script&gt;x&lt;/script&gt;</span>'


def test_foreground_colours_bright_colours_bold_and_reset():
    assert ansi_to_html("\x1b[32mok\x1b[0m done") == '<span class="ansi-green">ok</span> done'
    assert ansi_to_html("\x1b[91mbright\x1b[m") == '<span class="ansi-bright-red">bright</span>'
    assert (
        ansi_to_html("\x1b[1;34mBold blue") == '<span class="ansi-bold ansi-blue">Bold blue</span>'
    )
    assert ansi_to_html("\x1b[1mB\x1b[22mN") == '<span class="ansi-bold">B</span>N'
    assert ansi_to_html("\x1b[33mY\x1b[39mD") == '<span class="ansi-yellow">Y</span>D'
    for code, name in [(30, "black"), (35, "magenta"), (36, "cyan"), (37, "white")]:
        assert ansi_to_html(f"\x1b[{code}mx") == f'<span class="ansi-{name}">x</span>'
    for code, name in [(90, "black"), (97, "white")]:
        assert ansi_to_html(f"\x1b[{code}mx") == f'<span class="ansi-bright-{name}">x</span>'


def test_backgrounds_and_extended_colours_do_not_confuse_the_state():
    assert ansi_to_html("\x1b[41mx") == '<span class="ansi-bg-red">x</span>'
    # 38;5;1 is a 256-colour code: not rendered, and its "1" must not turn on bold.
    assert ansi_to_html("\x1b[38;5;1mx") == "x"
    assert ansi_to_html("\x1b[38;2;1;2;3;32mx") == '<span class="ansi-green">x</span>'


def test_spans_never_cross_a_newline():
    html = ansi_to_html("\x1b[31mone\ntwo\n\nthree\x1b[0m\n")
    assert html.split("\n") == [
        '<span class="ansi-red">one</span>',
        '<span class="ansi-red">two</span>',
        "",
        '<span class="ansi-red">three</span>',
        "",
    ]


def test_other_escape_sequences_and_control_characters_are_dropped():
    text = "\x1b[2K\x1b[1Gprogress\r\x1b]0;window title\x07done\x07\x00\tend\r\n"
    assert ansi_to_html(text) == "progressdone\tend\n"


def test_state_carries_across_chunks_and_a_cut_escape_is_held_back():
    converter = AnsiConverter()
    assert converter.feed("a\x1b[3") == "a"
    assert converter.pending == "\x1b[3"
    assert converter.feed("1mred") == '<span class="ansi-red">red</span>'
    assert converter.pending == ""
    assert converter.state.codes() == "31"
    assert converter.feed(" more") == '<span class="ansi-red"> more</span>'


def test_a_converter_resumes_from_saved_codes():
    first = AnsiConverter()
    first.feed("\x1b[1;4;93;44mstyled")
    codes = first.state.codes()
    assert codes == "1;4;93;44"
    resumed = AnsiConverter(codes)
    assert (
        resumed.feed("x")
        == '<span class="ansi-bold ansi-underline ansi-bright-yellow ansi-bg-blue">x</span>'
    )
    # Junk instead of codes (from a query string) is ignored.
    assert AnsiConverter('"><script>').feed("x") == "x"


def test_a_lone_escape_that_never_completes_is_not_held_forever():
    converter = AnsiConverter()
    converter.feed("\x1b]" + "t" * 300)
    assert converter.pending == ""
