from pathlib import Path

import pytest

from tunelab.errors import ModelNotFoundError
from tunelab.models import ALIASES, resolve_model
from tunelab.models.registry import ModelAlias, register_alias


def test_alias_resolves_to_a_model_folder():
    r = resolve_model("minilm-l6")
    assert r.kind == "alias" and (Path(r.path) / "config.json").is_file()


def test_local_folder(tiny_model_dir):
    r = resolve_model(str(tiny_model_dir))
    assert r.kind == "local" and r.path == str(tiny_model_dir.resolve())


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face model folder"):
        resolve_model(str(tmp_path))


def test_missing_local_path_suggests_aliases(tmp_path):
    with pytest.raises(
        ModelNotFoundError, match="model folder not found; offline aliases: minilm-l6"
    ):
        resolve_model(str(tmp_path / "nope"))


def test_unreachable_hub_id_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model("no-such-org/no-such-model-xyz")
    msg = str(e.value)
    assert "no-such-org/no-such-model-xyz" in msg and "minilm-l6" in msg and "\n" not in msg


def test_duplicate_alias_rejected():
    with pytest.raises(ValueError, match="registered twice"):
        register_alias(ModelAlias("minilm-l6", "x", "y", "z", "d", "en"))
    assert "minilm-l6" in ALIASES
