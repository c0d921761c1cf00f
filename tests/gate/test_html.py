"""report.html embeds its images and refuses a report whose image is missing."""

from __future__ import annotations

import base64

import pytest

from hrm.gate.html import render_html

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_images_are_embedded_and_tables_rendered(tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.png").write_bytes(PNG)
    page = render_html("| a | b |\n|---|---|\n| 1 | 2 |\n\n![a](plots/a.png)\n", tmp_path)
    assert "<table>" in page and "<td>2</td>" in page
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in page


def test_missing_image_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.png"):
        render_html("![x](plots/gone.png)\n", tmp_path)
