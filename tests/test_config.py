from pathlib import Path

import pytest

from tunelab import config as C
from tunelab.cli import build_parser, main
from tunelab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_yaml_then_flags_override(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("epochs: 2\nbatch-size: 8\nlearning_rate: 1e-4\nmethod: lora\n")
    cfg = C.build({"epochs": "5"}, str(f))
    assert cfg.train.epochs == 5.0  # flag wins
    assert cfg.train.batch_size == 8 and cfg.method.method == "lora"
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.model.model == "minilm-l6"  # default untouched


def test_unknown_yaml_key_is_named(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("epochs: 2\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'learning_rat' \(value 0.1\)"):
        C.build({}, str(f))


@pytest.mark.parametrize(
    "key,value,msg",
    [
        ("epochs", "three", "key 'epochs' expects float, got 'three'"),
        ("batch_size", "1.5", "key 'batch_size' expects int"),
        ("overwrite", "maybe", "key 'overwrite' expects bool"),
    ],
)
def test_bad_values_are_named(key, value, msg):
    with pytest.raises(ConfigError, match=msg):
        C.build({key: value})


def test_range_validation():
    cfg = C.build({"epochs": 0})
    with pytest.raises(ConfigError, match="'epochs' = 0.0 must be > 0"):
        C.validate(cfg)


def test_every_declared_range_and_choice_is_enforced():
    """Each run setting that declares a range or choices (the metadata the studio's forms read
    too) is refused outside it with the key, the value and the reason; its default passes."""
    declared = 0
    for key, (group, f, _) in C.fields().items():
        if group == "method" or not ("check" in f.metadata or "choices" in f.metadata):
            continue
        declared += 1
        C.validate(C.RunConfig())  # defaults are valid
        bad = (
            "bogus"
            if "choices" in f.metadata
            else next(v for v in (-1, 0, 1, 7, 0.5) if not f.metadata["check"](v))
        )
        cfg = C.RunConfig()
        setattr(getattr(cfg, group), key, bad)
        with pytest.raises(ConfigError, match=rf"key '{key}' = {bad!r} must be"):
            C.validate(cfg)
    assert declared >= 25


def test_unknown_flag_is_named(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train", "--learning-rat", "1"])
    assert e.value.code == 2
    assert "--learning-rat" in capsys.readouterr().err


def test_unknown_key_via_cli_exit_2(tmp_path, capsys):
    f = tmp_path / "run.yaml"
    f.write_text("nonsense: 1\n")
    assert main(["train", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'nonsense'" in err and "Traceback" not in err


def test_every_flag_is_a_config_key():
    """The CLI is derived from the dataclasses: no flag without a key and vice versa."""
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions} - {"help", "config"}
    assert dests == set(C.fields())


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    from tunelab.methods import get_method
    from tunelab.tasks import get_task

    cfg = C.build({}, str(path))
    C.validate(cfg)
    get_task(cfg.data.task), get_method(cfg.method.method)
    for key in ("train", "validation", "test"):
        value = getattr(cfg.data, key)
        # research-use sets are built by a script (make data-msra, data-bbc) and git-ignored
        built = tuple(
            x.strip()
            for x in (REPO / ".gitignore").read_text().splitlines()
            if x.startswith("data/")
        )
        generated = value is not None and value.startswith(built)
        assert value is None or generated or (REPO / value).is_file(), (
            f"{path.name}: {key} {value} missing"
        )


def test_metric_for_best_must_belong_to_the_task(tiny_model_dir, toy_data, tmp_path, capsys):
    """Checked before training starts, with the task's metrics listed."""
    from conftest import train_args

    assert (
        main(train_args(tiny_model_dir, toy_data, tmp_path / "o", "--metric-for-best", "rmse")) == 2
    )
    err = capsys.readouterr().err
    assert "key 'metric_for_best' = 'rmse' is not a text-classification metric" in err
    assert "accuracy" in err and not (tmp_path / "o").exists()
