"""params.yaml loads into validated models; errors name the key; profiles merge."""

from __future__ import annotations

import pytest
import yaml

from hrm.config import ConfigError, load_params, parse_params


def test_repository_params_load_for_every_profile(repo_root):
    for profile in ("tiny", "cpu", "gpu"):
        params = load_params(repo_root / "params.yaml", profile)
        assert params.profile == profile
        assert params.model.hidden_size % params.model.num_heads == 0
        assert [p.name for p in params.train.phases] == ["foundation", "optimisation", "refinement"]


def test_profile_overrides_merge_over_base(repo_root):
    tiny = load_params(repo_root / "params.yaml", "tiny")
    gpu = load_params(repo_root / "params.yaml", "gpu")
    assert tiny.tokenizer.vocab_size < gpu.tokenizer.vocab_size
    assert gpu.model.hidden_size == 512 and gpu.train.precision == "bf16"
    # keys not overridden keep the base value
    assert tiny.tokenizer.min_frequency == gpu.tokenizer.min_frequency


def test_invalid_value_names_the_key(repo_root):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["model"]["num_heads"] = 3  # does not divide hidden_size
    with pytest.raises(ConfigError, match="model"):
        parse_params(raw, "cpu")
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["tokenizer"]["vocab_size"] = "big"
    with pytest.raises(ConfigError, match=r"tokenizer\.vocab_size"):
        parse_params(raw, "cpu")


def test_unknown_key_and_unknown_profile_are_errors(repo_root):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["train"]["learning_rate"] = 1.0
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        parse_params(raw, "cpu")
    with pytest.raises(ConfigError, match="unknown profile"):
        parse_params(yaml.safe_load((repo_root / "params.yaml").read_text()), "huge")


def test_every_field_has_a_docstring():
    from hrm.config import Params

    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(Params)


def test_every_profile_defines_the_sections_dvc_tracks(repo_root):
    """dvc.yaml tracks `profiles.${profile}.<section>`; DVC fails on a missing key."""
    import re

    tracked = set(re.findall(r"profiles\.\$\{profile\}\.(\w+)", (repo_root / "dvc.yaml").read_text()))
    assert tracked, "dvc.yaml tracks no profile sections"
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    for name, overrides in raw["profiles"].items():
        missing = tracked - set(overrides)
        assert not missing, f"profiles.{name} lacks {sorted(missing)} (use {{}} for no override)"


def test_synth_envs_must_name_configured_repos(repo_root):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["synth"]["envs"] = ["swesmith/jd__tenacity.0d40e76f", "swesmith/nobody__nothing.0000abcd"]
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "cpu")
    message = str(err.value)
    assert "synth.envs: 'swesmith/nobody__nothing.0000abcd' is not a key of envs.repos" in message
    assert "swesmith/jd__tenacity.0d40e76f" in message  # the known repos are listed
    assert "got {" not in message  # the whole params mapping is not dumped


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda raw: raw["sequences"].update(held_out_repos=["swesmith/x__y.0000abcd"]),
     "sequences.held_out_repos: 'swesmith/x__y.0000abcd' is not a key of envs.repos"),
    (lambda raw: raw["corpus"]["packages"].append({"package": "funcy==2.1"}),
     "corpus.packages: funcy is also the environment swesmith/Suor__funcy.207a7810"),
    (lambda raw: raw["model"].update(head_positions=8),
     "model.head_positions (8) must be at least sequences.max_insertions (16)"),
    (lambda raw: raw["synth"].update(kinds=["op_flip_cmp", "no_such_kind"]),
     "unknown mutation kinds ['no_such_kind']"),
    (lambda raw: raw["corpus"]["packages"].append({"package": "six"}),
     "'six' is not pinned as NAME==VERSION"),
    (lambda raw: raw["corpus"]["packages"].append({"package": " Tabulate==0.9.0"}),
     "packages: a package is listed twice"),
])
def test_cross_section_checks_name_the_key(repo_root, edit, expected):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    edit(raw)
    with pytest.raises((ConfigError, Exception)) as err:
        params = parse_params(raw, "cpu")
        # pins are checked where the corpus is fetched (the model only stores the string)
        from hrm.corpus.fetch import parse_pin

        for pkg in params.corpus.packages:
            parse_pin(pkg.package)
    assert expected in str(err.value)


def test_profile_phases_override_by_name(repo_root):
    """`profiles.<p>.phases.<name>` merges into the phase of that name; an unknown name or a
    non-mapping is an error naming the key."""
    import yaml

    from hrm.config import ConfigError, parse_params

    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    tiny = parse_params(raw, "tiny")
    base = parse_params(raw, "cpu")
    by_name = {p.name: p for p in tiny.train.phases}
    assert [p.name for p in tiny.train.phases] == [p.name for p in base.train.phases]
    assert by_name["foundation"].warmup_steps == 2 and by_name["foundation"].data == "corpus"
    assert by_name["refinement"].epochs == 1 and by_name["refinement"].halt_exploration_prob == 0.45
    raw["profiles"]["tiny"]["phases"]["warmup"] = {"epochs": 1}
    with pytest.raises(ConfigError, match=r"profiles.tiny.phases: unknown phase\(s\) \['warmup'\]"):
        parse_params(raw, "tiny")
    raw["profiles"]["tiny"]["phases"] = {"foundation": 3}
    with pytest.raises(ConfigError, match=r"profiles.tiny.phases.foundation: expected a mapping"):
        parse_params(raw, "tiny")
