"""The refer pickles are read without executing anything they name."""
from __future__ import annotations

import os
import pickle

import pytest

from steervit.data import safe_load_pickle


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_plain_data_loads(tmp_path):
    data = [{"ref_id": 1, "sentences": [{"sent": "a cat", "raw": "A cat!"}], "box": (1.5, 2.0), "ok": True, "x": None}]
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(data, protocol=2))
    assert safe_load_pickle(path) == data


def test_python2_byte_strings_decode(tmp_path):
    # protocol-2 SHORT_BINSTRING, as Python 2 wrote `str`: {'sent': 'caf\xc3\xa9'}
    payload = b"\x80\x02}q\x00U\x04sentq\x01U\x05caf\xc3\xa9q\x02s."
    path = tmp_path / "py2.p"
    path.write_bytes(payload)
    assert safe_load_pickle(path) == {"sent": "café"}


def test_refuses_a_global_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.p"
    path.write_bytes(pickle.dumps([{"ref_id": 1}, _Exploit(marker)], protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="os|posix|system"):
        safe_load_pickle(path)
    assert not marker.exists()
