"""CSV errors name the line an editor shows, also after blank lines and captions spanning lines."""

from __future__ import annotations

import pytest

from audioret.corpora import CorpusError
from audioret.corpora.csvfile import read_csv_rows, refuse_duplicates


def test_duplicate_and_short_rows_name_their_real_lines(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text('file_name,caption_1\na.wav,"a caption\nover two lines"\n\nb.wav,x\na.wav,y\n')
    rows = read_csv_rows(path, ("file_name",), "captions CSV")
    assert rows.lines == [3, 5, 6]
    with pytest.raises(CorpusError, match=r"'a\.wav' on lines 3, 6;"):
        refuse_duplicates(path, [r["file_name"] for r in rows], "file_name", "captions CSV", lines=rows.lines)
    path.write_text("file_name,caption_1\na.wav,x\n\n\nb.wav\n")
    with pytest.raises(CorpusError, match=r": line 5 of the captions CSV has 1 fields"):
        read_csv_rows(path, ("file_name",), "captions CSV")
