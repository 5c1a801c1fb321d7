"""``--set KEY=VALUE`` overrides (smac_jax.cli.apply_override) on a real job config."""
import math

import pytest
from conftest import load_o2o_config_module

from smac_jax.cli import apply_override
from smac_jax.errors import ConfigError


@pytest.fixture
def config():
    return load_o2o_config_module().get_config("pendulum-medium,smac,sac")


@pytest.mark.parametrize("value, expected", [("false", False), ("False", False), ("no", False), ("0", False),
                                             ("true", True), ("TRUE", True), ("yes", True), ("1", True)])
def test_boolean_fields_take_true_and_false(config, value, expected):
    apply_override(config, f"transfer_reset_optimizer={value}")
    assert config.transfer_reset_optimizer is expected


def test_typed_fields_are_cast_and_strings_taken_as_given(config):
    apply_override(config, "offline.agent.critic_lr=1e-4")
    apply_override(config, "online.steps=500")
    apply_override(config, "offline.agent.sm_target=alpha_score")
    assert (config.offline.agent.critic_lr, config.online.steps) == (1e-4, 500)
    assert isinstance(config.online.steps, int) and config.offline.agent.sm_target == "alpha_score"


def test_non_finite_and_integral_values_are_taken(config):
    apply_override(config, "online.replay.mixing_ratio=nan")  # refused later by the range check, naming it
    apply_override(config, "online.steps=500.0")
    assert math.isnan(config.online.replay.mixing_ratio) and config.online.steps == 500


@pytest.mark.parametrize("assignment, match", [
    ("transfer_reset_optimizer=maybe", "is a boolean; give true or false"),
    ("online.stepz=5", "the config has no field 'online.stepz'"),
    ("online.steps", "expected KEY=VALUE"),
    ("online.steps=lots", r"not a Python value \(NameError"),
    ("online.steps=50.9", r"^--set 'online.steps=50.9': online.steps is an integer; got 50.9$"),
    ("n_seeds=True", "n_seeds is an integer; got True"),
])
def test_bad_overrides_name_the_field(config, assignment, match):
    with pytest.raises(ConfigError, match=match):
        apply_override(config, assignment)


def test_a_config_field_given_twice_is_named():
    from smac_jax.cli import repeated_config_overrides

    argv = ["o2o.py", "--config=configs/o2o.py:pendulum", "--config.offline.agent.hidden_dims=16,16",
            "--config.seed=1", "--config.offline.agent.hidden_dims=8,8", "--workdir=x"]
    assert repeated_config_overrides(argv) == ["config.offline.agent.hidden_dims"]
    assert repeated_config_overrides(argv[:4]) == []
    assert repeated_config_overrides(["s.py", "--", "--config.a=1", "--config.a=2"]) == []


def test_config_argument_fields_are_found_among_the_overrides():
    from smac_jax.cli import config_argument_overrides

    argv = ["o2o.py", "--config=configs/o2o.py:pendulum,cql,sac", "--config.offline.agent.hidden_dims=16,16",
            "--config.online.learner=td3", "--config.task=hopper", "--config.offline.learner_x=1", "--workdir=x"]
    assert config_argument_overrides(argv) == ["config.online.learner", "config.task"]
    assert config_argument_overrides(argv[:3]) == []
    assert config_argument_overrides(["s.py", "--", "--config.task=x"]) == []


def test_the_accelerator_benchmark_script_names_real_scripts_and_flags():
    """experiments/accelerator_benchmarks.sh parses, and every script and flag it passes exists
    (it is meant to run once, unattended, on a borrowed machine)."""
    import os
    import re
    import subprocess

    from conftest import REPO_ROOT

    script = os.path.join(REPO_ROOT, "experiments", "accelerator_benchmarks.sh")
    assert subprocess.run(["bash", "-n", script], capture_output=True).returncode == 0
    text = open(script).read().replace("\\\n", " ")
    calls = re.findall(r"^\s*part \w+ \S+ (experiments/\w+\.py)(.*)$", text, flags=re.M)
    assert len(calls) == 6
    for path, args in calls:
        source = open(os.path.join(REPO_ROOT, path)).read()
        defined = set(re.findall(r"flags\.DEFINE_\w+\(\s*\"(\w+)\"", source))
        for flag in re.findall(r"--(\w+)", args):
            assert flag in defined, f"{path} has no --{flag}"
