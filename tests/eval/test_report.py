"""The figure and the HTML report of ``fastxent._eval.report``: for evaluations and comparisons
(labels with per-class and group tables, soft targets, a NaN row, no row, 1000 classes), the
PNG is a real, non-blank picture of the expected size with legible text, and the HTML page is
well-formed, self-contained, escaped and says what the result says."""

import base64
import html.parser
import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastxent
from fastxent._eval.report import MISSING_MATPLOTLIB, plot_figure, write_plot, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDTH, HEIGHT = 1200, 800
VOID_ELEMENTS = {"meta", "img", "br", "hr", "link", "input", "source", "wbr"}
MODEL_A_RGB = (0x1F, 0x77, 0xB4)
MODEL_B_RGB = (0xFF, 0x7F, 0x0E)


def _classifier(rng, n_rows, n_classes, sharpness=2.0):
    """Logits that are informative about their labels, and the labels."""
    target = rng.integers(0, n_classes, n_rows)
    x = rng.normal(size=(n_rows, n_classes))
    x[np.arange(n_rows), target] += sharpness
    return 1.5 * x, target


def _labels_case(rng):
    x, y = _classifier(rng, 3000, 10)
    return fastxent.evaluate(x, y, per_class=True, confusion=True,
                             groups=rng.integers(0, 6, len(y)))


def _soft_case(rng):
    x, _ = _classifier(rng, 2000, 8)
    return fastxent.evaluate(x, rng.dirichlet(np.full(8, 0.5), 2000),
                             groups=rng.integers(0, 4, 2000))


def _nan_case(rng):
    x, y = _classifier(rng, 2000, 5)
    x[17] = np.nan
    return fastxent.evaluate(x, y, per_class=True)


def _empty_case(rng):
    return fastxent.evaluate(np.zeros((0, 4)), np.zeros(0, dtype=np.int64))


def _many_classes_case(rng):
    x, y = _classifier(rng, 20_000, 1000, sharpness=3.0)
    return fastxent.evaluate(x, y, per_class=True, confusion=True)


def _no_tables_case(rng):
    return fastxent.evaluate(*_classifier(rng, 2000, 10))


def _compare_labels_case(rng):
    x, y = _classifier(rng, 3000, 10)
    noisy = 0.6 * x + rng.normal(size=x.shape)
    return fastxent.compare(x, noisy, y, per_class=True, groups=rng.integers(0, 6, len(y)))


def _compare_soft_case(rng):
    x, _ = _classifier(rng, 2000, 6)
    return fastxent.compare(x, 0.5 * x, rng.dirichlet(np.ones(6), 2000))


def _compare_many_classes_case(rng):
    x, y = _classifier(rng, 20_000, 1000, sharpness=3.0)
    return fastxent.compare(x, 0.7 * x, y, per_class=True)


CASES = {
    "labels": _labels_case, "soft": _soft_case, "nan_row": _nan_case, "no_row": _empty_case,
    "1000_classes": _many_classes_case, "no_tables": _no_tables_case,
    "compare_labels": _compare_labels_case, "compare_soft": _compare_soft_case,
    "compare_1000_classes": _compare_many_classes_case,
}


@pytest.fixture(scope="module", params=sorted(CASES))
def rendered(request, tmp_path_factory):
    """A result, its PNG and its HTML report (written once per case)."""
    pytest.importorskip("matplotlib")
    result = CASES[request.param](np.random.default_rng(sorted(CASES).index(request.param)))
    folder = tmp_path_factory.mktemp(request.param)
    png, page = folder / "figure.png", folder / "report.html"
    write_plot(result, png)
    write_report(result, page, title=f"Report <{request.param}> & co")
    return request.param, result, png, page


class PageParser(html.parser.HTMLParser):
    """Collects what the tests check of a page, and the tags left open or closed out of
    order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.open_tags, self.errors = [], []
        self.doctype = None
        self.texts = {"title": [], "h1": [], "p": [], "caption": [], "td": []}
        self.images = []
        self.tags = set()

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        if tag not in VOID_ELEMENTS:
            self.open_tags.append(tag)

    def handle_endtag(self, tag):
        if not self.open_tags or self.open_tags[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open_tags[-1:]}")
        else:
            self.open_tags.pop()

    def handle_data(self, data):
        if self.open_tags and self.open_tags[-1] in self.texts:
            self.texts[self.open_tags[-1]].append(data)


def _parse(page):
    parser = PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    assert not parser.errors, parser.errors
    assert not parser.open_tags, f"left open: {parser.open_tags}"
    return parser


def _pixels(png_bytes):
    from matplotlib.image import imread
    return imread(io.BytesIO(png_bytes), format="png")


def _has_color(pixels, rgb, tolerance=6):
    """Whether some pixels are the colour `rgb` (0-255 per channel)."""
    target = np.array(rgb) / 255
    return bool(np.any(np.all(np.abs(pixels[..., :3] - target) < tolerance / 255, axis=-1)))


def _drawn_texts(fig):
    """The texts a figure really draws (not the tick labels outside the axes' limits), and
    the renderer that drew them."""
    renderer = fig.canvas.get_renderer()
    drawn = {}
    draw_text = renderer.draw_text

    def record(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if mtext is not None and s.strip():
            drawn[id(mtext)] = mtext
        return draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = record
    fig.draw(renderer)
    return list(drawn.values()), renderer


def _check_picture(png_bytes, name):
    """A PNG of the expected size, not blank, with the models' colours where they have
    rows."""
    assert png_bytes[:8] == PNG_MAGIC
    pixels = _pixels(png_bytes)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05, "the picture is blank"
    levels = np.round(rgb.reshape(-1, 3) * 31).astype(np.int32)     # 32 levels a channel
    distinct = np.unique(levels @ np.array([32 * 32, 32, 1]))
    assert len(distinct) > 30, f"only {len(distinct)} colours"
    assert _has_color(pixels, MODEL_A_RGB) == (name != "no_row")
    assert _has_color(pixels, MODEL_B_RGB) == name.startswith("compare")


# ---------------------------------------------------------------------------------------------
# the PNG


def test_png_is_a_picture_of_the_expected_size(rendered):
    name, _, png, _ = rendered
    _check_picture(png.read_bytes(), name)


def test_png_keeps_its_format_whatever_the_extension(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "figure.image"
    write_plot(_no_tables_case(np.random.default_rng(3)), path)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_figure_text_is_legible_and_does_not_overlap(rendered):
    """Every text is at least 9 pt, and no two texts' boxes overlap at the saved size."""
    _, result, _, _ = rendered
    texts, renderer = _drawn_texts(plot_figure(result))
    assert texts
    for text in texts:
        assert text.get_fontsize() >= 9, (text.get_text(), text.get_fontsize())
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    for i, (text_i, box_i) in enumerate(boxes):
        assert 0 <= box_i.x0 and box_i.x1 <= WIDTH + 1 and 0 <= box_i.y0, text_i
        assert box_i.y1 <= HEIGHT + 1, text_i
        for text_j, box_j in boxes[i + 1:]:
            overlap = (min(box_i.x1, box_j.x1) - max(box_i.x0, box_j.x0),
                       min(box_i.y1, box_j.y1) - max(box_i.y0, box_j.y0))
            assert min(overlap) <= 1, f"{text_i!r} overlaps {text_j!r}"


def test_figure_has_four_titled_panels(rendered):
    _, result, _, _ = rendered
    fig = plot_figure(result)
    titles = [panel.get_suptitle() for panel in fig.subfigs]
    assert len(titles) == 4 and all(titles), titles
    assert result.summary().split(" · ")[0] in fig.get_suptitle()
    assert fig.get_size_inches().tolist() == [12.0, 8.0]


def test_figure_uses_no_pyplot():
    """A figure is drawn with its own Agg canvas: pyplot (and its global state and GUI
    backends) is never imported."""
    pytest.importorskip("matplotlib")
    code = textwrap.dedent("""
        import sys, tempfile, os
        import numpy as np, fastxent
        from fastxent._eval.report import write_plot
        rng = np.random.default_rng(0)
        result = fastxent.evaluate(rng.normal(size=(50, 3)), rng.integers(0, 3, 50))
        write_plot(result, os.path.join(tempfile.mkdtemp(), "f.png"))
        assert "matplotlib.pyplot" not in sys.modules
        """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# the HTML report


def test_report_is_well_formed_html5(rendered):
    _, _, _, page = rendered
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>\n")
    parser = _parse(page)
    assert parser.doctype == "DOCTYPE html"
    assert {"html", "head", "meta", "title", "body", "table", "img"} <= parser.tags
    assert '<meta charset="utf-8">' in text


def test_report_is_self_contained(rendered):
    _, _, _, page = rendered
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "<link" not in text
    assert "http://" not in text and "https://" not in text and "url(" not in text


def test_report_says_the_summary_first_and_embeds_the_figure(rendered):
    name, result, _, page = rendered
    parser = _parse(page)
    assert "".join(parser.texts["p"][:1]) == result.summary()
    (image,) = parser.images
    prefix = "data:image/png;base64,"
    assert image["src"].startswith(prefix)
    _check_picture(base64.b64decode(image["src"][len(prefix):], validate=True), name)
    assert (image["width"], image["height"]) == (str(WIDTH), str(HEIGHT))


def test_report_escapes_text(rendered):
    name, _, _, page = rendered
    text = page.read_text(encoding="utf-8")
    assert f"Report &lt;{name}&gt; &amp; co" in text
    assert f"<{name}>" not in text
    parser = _parse(page)
    assert "".join(parser.texts["title"]) == f"Report <{name}> & co"
    assert "".join(parser.texts["h1"]) == f"Report <{name}> & co"


def test_report_tables(rendered):
    name, result, _, page = rendered
    parser = _parse(page)
    captions = parser.texts["caption"]
    cells = parser.texts["td"]
    assert {"Main metrics", "Baselines", "Loss concentration"} <= set(captions)
    if name.startswith("compare"):
        assert any(c.startswith("Paired differences over") for c in captions)
        assert "loss A − B (nats)" in cells
    evaluated = result.a if name.startswith("compare") else result
    assert any(c.startswith("Per class") for c in captions) == (evaluated.per_class is not None)
    assert any(c.startswith("Per group") for c in captions) == (evaluated.groups is not None)
    shows_confusion = evaluated.confusion is not None and evaluated.n_classes <= 20
    assert any(c.startswith("Confusion matrix") for c in captions) == shows_confusion
    if name == "1000_classes":
        _check_worst_and_best_20(result.per_class, page.read_text(encoding="utf-8"))
    if name.endswith("1000_classes"):
        assert "… 960 classes not shown …" in cells


def _check_worst_and_best_20(per_class, text):
    """The per-class table of many classes has the 20 worst and 20 best by loss."""
    table = text[text.index("<caption>Per class"):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") - 1 == 40                # less the header
    order = np.argsort(-per_class.loss)
    for index in np.concatenate([order[:20], order[-20:]]):
        assert f"<tr><td>{per_class.keys[index]}</td>" in table


def test_report_default_title(tmp_path):
    pytest.importorskip("matplotlib")
    page = tmp_path / "report.html"
    write_report(_no_tables_case(np.random.default_rng(1)), page)
    assert "".join(_parse(page).texts["title"]) == "Evaluation of 2,000 rows, 10 classes"


# ---------------------------------------------------------------------------------------------
# errors


def test_missing_matplotlib_says_how_to_install_it(monkeypatch, tmp_path):
    result = _no_tables_case(np.random.default_rng(2))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for draw in (lambda: plot_figure(result), lambda: write_plot(result, tmp_path / "f.png"),
                 lambda: write_report(result, tmp_path / "r.html")):
        with pytest.raises(ImportError, match=r"pip install 'fastxent\[plot\]'"):
            draw()
    assert "matplotlib" in MISSING_MATPLOTLIB
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("draw", [plot_figure, lambda r: write_report(r, "unused.html")])
def test_other_objects_are_refused(draw):
    with pytest.raises(TypeError, match="EvaluationResult or a ComparisonResult, got dict"):
        draw({"loss": 1.0})
