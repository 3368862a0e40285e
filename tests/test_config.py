"""Configuration: layers, precedence, unknown keys, wrong types, key variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from langgraph_feedit import ConfigError, FeeditConfig
from langgraph_feedit.config import env_overrides, resolve_config


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_put_every_role_on_the_embedded_endpoint() -> None:
    config = FeeditConfig.load(env={})
    for role in ("draft", "critique", "edit", "judge", "evaluator"):
        assert config.role(role).base_url is None
    assert config.role("judge").temperature == 0.0
    assert config.role("draft").temperature == 0.7
    assert config.width.drafts == 4


def test_toml_file_and_default_role_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feedit.toml",
        """
[roles.default]
base_url = "http://127.0.0.1:8000/v1"
model = "m"
[roles.critique]
model = "critic"
temperature = 0.2
[width]
drafts = 8
[depth]
stop_score = 0.9
""",
    )
    config = FeeditConfig.load(path, env={})
    assert config.role("draft").base_url == "http://127.0.0.1:8000/v1"
    assert config.role("critique").model == "critic"
    assert config.role("critique").temperature == 0.2
    assert config.role("edit").model == "m"
    assert config.width.drafts == 8
    assert config.depth.stop_score == 0.9


def test_yaml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, "feedit.yaml", "width:\n  drafts: 3\nroles:\n  judge:\n    kind: reward\n"
    )
    config = FeeditConfig.load(path, env={})
    assert config.width.drafts == 3
    assert config.role("judge").kind == "reward"


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", "[width]\ndraftz = 3\n")
    with pytest.raises(ConfigError) as info:
        FeeditConfig.load(path, env={})
    assert "width.draftz" in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.key == "width.draftz"


def test_unknown_role_key(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", "[roles.draft]\ntemprature = 0.3\n")
    with pytest.raises(ConfigError, match=r"roles\.draft\.temprature"):
        FeeditConfig.load(path, env={})


def test_wrong_type_names_the_key_without_echoing_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", '[width]\ndrafts = "sk-secret-looking"\n')
    with pytest.raises(ConfigError) as info:
        FeeditConfig.load(path, env={})
    assert "width.drafts" in str(info.value)
    assert "sk-secret-looking" not in str(info.value)


def test_out_of_bounds_value(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", "[roles.draft]\ntemperature = 9.0\n")
    with pytest.raises(ConfigError, match=r"roles\.draft\.temperature"):
        FeeditConfig.load(path, env={})


def test_unparseable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", "[width\ndrafts = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        FeeditConfig.load(path, env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        FeeditConfig.load(tmp_path / "absent.toml", env={})


def test_missing_key_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEEDIT_TEST_KEY", raising=False)
    config = FeeditConfig.load(
        env={}, overrides={"roles": {"draft": {"api_key_env": "FEEDIT_TEST_KEY"}}}
    )
    with pytest.raises(ConfigError, match="FEEDIT_TEST_KEY"):
        config.role("draft").api_key("draft")
    monkeypatch.setenv("FEEDIT_TEST_KEY", "sk-abc123")
    assert config.role("draft").api_key("draft") == "sk-abc123"


def test_a_key_in_place_of_a_variable_name_is_refused_without_printing_it() -> None:
    with pytest.raises(ConfigError) as info:
        FeeditConfig.load(env={}, overrides={"roles": {"draft": {"api_key_env": "sk-live-123"}}})
    assert "sk-live-123" not in str(info.value)
    assert "api_key_env" in str(info.value)


def test_precedence_defaults_file_env_arguments_run(tmp_path: Path) -> None:
    path = write(
        tmp_path, "f.toml", "[width]\ndrafts = 2\ncritiques = 2\nedits = 2\n[depth]\nbeam = 3\n"
    )
    env = {"FEEDIT_WIDTH__CRITIQUES": "3", "FEEDIT_WIDTH__EDITS": "3"}
    config = FeeditConfig.load(path, env=env, overrides={"width": {"edits": 4}})
    # file beats defaults, environment beats file, arguments beat environment
    assert (config.width.drafts, config.width.critiques, config.width.edits) == (2, 3, 4)
    assert config.depth.beam == 3
    assert config.depth.max_rounds == 1  # default kept
    # per-run configuration beats everything
    run = resolve_config(config, overrides={"width": {"drafts": 6}})
    assert (run.width.drafts, run.width.critiques, run.width.edits) == (6, 3, 4)


def test_bad_environment_variable_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        FeeditConfig.load(env={"FEEDIT_WIDTH__DRAFTZ": "3"})
    assert "width.draftz" in str(info.value)
    assert "environment" in str(info.value)


def test_env_overrides_parse_nested_names_and_json() -> None:
    env = {
        "FEEDIT_ROLES__DRAFT__STOP": '["\\n\\n"]',
        "FEEDIT_ROLES__DRAFT__BASE_URL": "http://127.0.0.1:1/v1",
        "OTHER": "x",
        "FEEDIT_": "y",
    }
    assert env_overrides(env) == {
        "roles": {"draft": {"stop": ["\n\n"], "base_url": "http://127.0.0.1:1/v1"}}
    }


def test_presets_fill_what_is_not_set_explicitly() -> None:
    config = FeeditConfig.load(env={}, overrides={"depth": {"max_rounds": 5}})
    refine = resolve_config(config, preset="self-refine")
    assert refine.width.drafts == 1
    assert refine.depth.max_rounds == 5  # explicit beats the preset
    assert refine.depth.beam == 1
    best = resolve_config(FeeditConfig(), preset="best-of-n")
    assert best.width.critiques == 0 and best.depth.max_rounds == 0
    # a per-run preset replaces the build-time one
    switched = resolve_config(FeeditConfig(), preset="single", overrides={"preset": "beam"})
    assert switched.preset == "beam" and switched.width.drafts == 4


def test_a_per_run_preset_replaces_the_configurations_shape_and_keeps_what_it_leaves_open() -> None:
    """One preset rule for every caller: under the settings given with it, over those before."""
    config = FeeditConfig.load(env={}, overrides={"width": {"drafts": 3}, "preset": "best-of-n"})
    assert resolve_config(config).width.drafts == 3  # the configuration's own preset fills in
    single = resolve_config(config, overrides={"preset": "single"})
    assert single.preset == "single" and single.width.drafts == 1
    assert single.depth.max_rounds == 0
    edit = resolve_config(config, overrides={"preset": "feedback-edit"})
    assert edit.width.drafts == 3 and edit.depth.max_rounds >= 1  # drafts left open
    wider = resolve_config(config, overrides={"preset": "single", "width": {"drafts": 2}})
    assert wider.width.drafts == 2  # settings given with the per-run preset beat it


def test_use_n_is_no_role_setting() -> None:
    """A run sends one sample per branch, so a role key asking for ``n > 1`` would do nothing."""
    with pytest.raises(ConfigError, match=r"unknown key 'roles\.draft\.use_n'"):
        FeeditConfig.load(env={}, overrides={"roles": {"draft": {"use_n": True}}})


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'wide'"):
        resolve_config(FeeditConfig(), preset="wide")


def test_per_run_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"width\.drafs"):
        resolve_config(FeeditConfig(), overrides={"width": {"drafs": 2}})


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://127.0.0.1/v1", "http:///v1", "10.0.0.9:8000/v1", "http://h:port/v1"]
)
def test_a_base_url_that_is_not_http_is_refused_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        FeeditConfig.load(env={}, overrides={"roles": {"draft": {"base_url": url}}})
    assert info.value.key == "roles.draft.base_url"
    assert "roles.draft.base_url" in str(info.value) and "http" in str(info.value)
    assert url not in str(info.value)  # never echoed: a URL may carry credentials


def test_a_base_url_in_a_file_or_the_environment_is_checked_at_load(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[roles.default]\nbase_url = "ftp://example.com/v1"\n')
    with pytest.raises(ConfigError, match=r"roles\.default\.base_url") as info:
        FeeditConfig.load(path, env={})
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match=r"roles\.critique\.base_url"):
        FeeditConfig.load(env={"FEEDIT_ROLES__CRITIQUE__BASE_URL": "not a url"})
    good = FeeditConfig.load(
        env={}, overrides={"roles": {"default": {"base_url": "https://api.example.com/v1"}}}
    )
    assert good.role("judge").base_url == "https://api.example.com/v1"


def test_roles_in_use_and_their_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEEDIT_TEST_CRITIC_KEY", raising=False)
    config = FeeditConfig.load(
        env={}, overrides={"roles": {"critique": {"api_key_env": "FEEDIT_TEST_CRITIC_KEY"}}}
    )
    assert resolve_config(config).roles_in_use() == ["draft", "critique", "edit", "judge"]
    with pytest.raises(ConfigError, match="FEEDIT_TEST_CRITIC_KEY"):
        resolve_config(config).check_api_keys()
    # best-of-n calls no critique: its unset variable does not matter
    best = resolve_config(config, preset="best-of-n")
    assert best.roles_in_use() == ["draft", "judge"]
    best.check_api_keys()
    single = resolve_config(config, preset="single")
    assert single.roles_in_use() == ["draft"]
    consensus = resolve_config(config.merged({"roles": {"judge": {"kind": "consensus"}}}))
    assert "judge" not in consensus.roles_in_use()
