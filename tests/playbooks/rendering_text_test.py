"""The plain-text part of an e-mail from its HTML (playbooks.rendering.html_to_text): table cases, and
the same text as the standard library's `html.parser` on random markup (what it replaced)."""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser

import pytest

from playbooks.rendering import html_to_text

CASES = [
    ("<p>Hi Zoë,</p><p>Two\n   lines</p>", "Hi Zoë,\n\nTwo lines\n"),
    ("<ul><li>one</li><li>two</li></ul>", "- one\n- two\n"),
    ("<table><tr><td>ARR</td><td>$120,000</td></tr></table>", "ARR  $120,000\n"),
    ("line<br>break<br/>twice", "line\nbreak\n\ntwice\n"),
    ("<head><title>x</title></head><body>body</body>", "body\n"),
    ("<style>p > a { color: red }</style>shown", "shown\n"),
    ("<script>if (a<b && c>d) {}</script>after", "after\n"),
    ("<SCRIPT>x<y</Script >after", "after\n"),
    ("a &amp; b &lt;c&gt; &#39;q&#39; &nbsp;", "a & b <c> 'q'\n"),
    ('<a href="https://x.example/?a=1&amp;b=2" title="a > b">link</a>', "link\n"),
    ("<!-- hidden <p>comment</p> -->text<!doctype html><?php x ?>", "text\n"),
    ("5 < 6 and 7 >= 3", "5 < 6 and 7 >= 3\n"),
    ("<P>upper</P><DIV>case</DIV>", "upper\n\ncase\n"),
    ("<p></p>\n\n\n<p></p><p>a</p>\n\n\n\n<p>b</p>", "a\n\nb\n"),
    ("", "\n"),
    ("<!-- never closed <p>hidden", "\n"),
    ("<script>never closed <p>hidden", "\n"),
    # A tag never spans a '<' (html.parser and browsers would read `<y <p>` as one tag named "y"):
    # broken markup shows as text rather than hiding what follows, and hostile input stays linear.
    ("x <y <p>z", "x <y\nz\n"),
]


@pytest.mark.parametrize("html,text", CASES)
def test_the_text_of_markup(html, text):
    assert html_to_text(html) == text


class _Oracle(HTMLParser):
    """The converter this replaced, walking the markup with the standard library's parser."""

    BREAKS = {"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "li", "table", "ul", "ol", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script", "head"):
            self.hidden += 1
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append("  ")
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("style", "script", "head"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BREAKS and tag != "li":
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(re.sub(r"\s+", " ", data))


def _oracle(html: str) -> str:
    parser = _Oracle()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


PIECES = ["<p>", "</p>", "<br>", "<br/>", "<br />", "<li>", "</li>", "<td>", "<th x='a>b'>", "<style>", "</style>",
          "a{b}", "<head>", "</head>", "hello", "  ", "\n", "&amp;", "&lt;", "&#39;", "&nbsp;", "< ", ">", "<!-- c -->",
          "<!doctype html>", '<a href="x>y">', "</a>", "<div class=x>", "</div>", "<script>if(a<b)</script>", "<ul>",
          "<ol>", "<hr>", "<hr/>", "<h1>", "</h1>", "<table>", "</table>", "<tr>", "</tr>", "Zoë 🎉", "<b>", "</b>",
          "<P>", "</P>", "&", "<?x?>", "<span title=\"5 > 4\">"]


def test_the_same_text_as_the_standard_parser_on_random_markup():
    """Every shape our templates and inbound replies use, mixed at random (a seeded 5,000). The
    markup ends with a paragraph so that the standard parser has nothing held back at the end."""
    rng = random.Random(20261201)
    for _ in range(5000):
        html = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 30))) + "<p>end</p>"
        assert html_to_text(html) == _oracle(html), html


def test_hostile_markup_is_read_in_one_pass():
    """Unclosed quotes and tags by the hundred thousand: a failed tag never reads past the next '<'."""
    assert html_to_text('<a href="' * 100_000).startswith('<a href="')
    assert html_to_text("<" * 100_000 + "x") == "<" * 100_000 + "x\n"
