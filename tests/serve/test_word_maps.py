"""/api/words: per word of a prompt, where the image's patches read it (cross-attention), on the golden model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from .conftest import decode_data_url, png_bytes
from .test_api import assert_error, steer

PROMPT = "the cat's red-nosed face."


def words(client, prompts, **kwargs):
    return steer(client, prompts, url="/api/words", **kwargs)


def model_mass(app, model, prompt: str, example: str, gate: float) -> torch.Tensor:
    """(N_patches, L): the patches' attention on each token, mean over layers and heads, from the model API."""
    picture = app.state.gallery.examples[example].image
    x = app.state.service.transform(picture)[None]
    with torch.no_grad():
        maps = model.drop_prefix_rows(model.get_cross_attention_maps(x, [prompt], gate_factor=gate))
    return torch.stack(list(maps.values())).mean(dim=(0, 2))[0]


def test_words_cover_every_real_token(serve_model):
    encoder = serve_model.text_encoder
    found = encoder.words(PROMPT)
    # subword tokens are merged into the prompt's space-separated words
    assert [w for w, _ in found] == ["the", "cat's", "red-nosed", "face."]
    ids = encoder.tokenize([PROMPT])["input_ids"][0].tolist()
    positions = [p for _, ps in found for p in ps]
    assert positions == list(range(1, len(ids) - 1))  # every token but <s> and </s>, each once, in order
    assert len(found[2][1]) > 1  # "red-nosed" is several tokens in this vocabulary


def test_word_maps_match_the_model(client, app, serve_model):
    response = words(client, [PROMPT], example="cat")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["gate_factor"] == 1.0
    assert answer["layers"] == ["before block 1", "before block 3", "before block 5"]
    (result,) = answer["results"]
    assert result["prompt"] == PROMPT
    mass = model_mass(app, serve_model, PROMPT, "cat", 1.0)
    grid = (10, 10)  # 160 px / patch 16
    total = result["other_share"]
    for entry, (word, positions) in zip(result["words"], serve_model.text_encoder.words(PROMPT), strict=True):
        assert entry["word"] == word
        heat = mass[:, positions].sum(-1)
        # shares are rounded to 4 decimals in the answer
        assert abs(entry["share"] - float(heat.mean())) <= 1e-4
        row, col = divmod(int(heat.argmax()), grid[1])
        assert (entry["peak_x"], entry["peak_y"]) == (round((col + 0.5) / 10, 4), round((row + 0.5) / 10, 4))
        assert decode_data_url(entry["map"]).shape == (112, 112, 3)
        total += entry["share"]
    assert abs(total - 1.0) <= 1e-3  # each patch's attention sums to 1 over the tokens
    maps = [decode_data_url(e["map"]).astype(int) for e in result["words"]]
    assert np.abs(maps[1] - maps[3]).mean() > 1.0  # different words are read in different places


def test_gate_factor_is_per_request_and_several_prompts_answer_in_order(client, app, serve_model):
    prompts = [PROMPT, "zebra"]
    closed = words(client, prompts, gate=0, example="cat").json()
    assert serve_model.gate_factor == 1.0
    assert [r["prompt"] for r in closed["results"]] == prompts
    assert [e["word"] for e in closed["results"][1]["words"]] == ["zebra"]
    mass = model_mass(app, serve_model, PROMPT, "cat", 0.0)
    for entry, (_, positions) in zip(closed["results"][0]["words"], serve_model.text_encoder.words(PROMPT)):
        assert abs(entry["share"] - float(mass[:, positions].sum(-1).mean())) <= 1e-4
    opened = words(client, prompts, gate=1, example="cat").json()
    pictures = [[decode_data_url(e["map"]).astype(int) for e in r["words"]]
                for r in (closed["results"][0], opened["results"][0])]
    # open gates change what the later layers read (the tiny random model's maps are nearly flat, so
    # the shares move little, but each overlay is min-max scaled and shows the change)
    assert max(np.abs(a - b).mean() for a, b in zip(*pictures)) > 1.0


@pytest.mark.parametrize("prompts, kwargs, status, words_in_error", [
    (["a b c d e f g"] * 8, {"example": "cat"}, 400, ["56 words", "at most 48"]),
    ([], {"example": "cat"}, 400, ["at least one prompt"]),
    (["the cat"], {"image": b"not an image"}, 400, ["cannot read the file as an image"]),
    (["the cat"], {"example": "cat", "gate": "abc"}, 400, ["gate_factor"]),
    (["the cat"], {}, 400, ["no image"]),
])
def test_bad_requests_get_one_clear_line(client, prompts, kwargs, status, words_in_error):
    response = words(client, prompts, **kwargs)
    assert_error(response, status, *words_in_error)
    assert "\n" not in response.json()["error"]
    assert words(client, ["the cat"], image=png_bytes(4)).status_code == 200  # and the server keeps serving


def test_the_page_has_a_word_maps_button(client):
    page = client.get("/").text
    assert 'id="words-run"' in page and '"/api/words"' in page and 'id="words-maps"' in page
