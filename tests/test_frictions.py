"""Smaller frictions (issue 29, item 7), through the real command line where the point is what
it prints: the training banner names the A3C variant and counts workers in the singular, type
errors take the right article, a YAML syntax error names its line and column, and --resume
refuses another game before it prints what the flags would change."""
import pytest

from Agent.algorithms import get, load_run_config
from Utils.config import ConfigError, check_memory, load_config, read_yaml_section

from conftest import ROOT
from test_training import tree_snapshot

DEFAULT_YAML = f"{ROOT}/training_configs.yml"


def dirs(tmp_path):
    return ["--models_dir", str(tmp_path / "Models"), "--logs_dir", str(tmp_path / "Logs")]


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """A finished 300-step ACER run on CartPole (one worker), and what its command printed."""
    from conftest import run_main
    root = tmp_path_factory.mktemp("frictions")
    result = run_main(["--do_train", "--env_name", "CartPole-v1", "--n_workers", "1",
                       "--total_steps", "300", "--run_name", "cartpole", *dirs(root)], root)
    assert result.returncode == 0, result.stderr
    return root, root / "Models" / "cartpole", result


def banner(result):
    return next(line for line in result.stdout.splitlines() if line.startswith("Training "))


# 1 and 2: the banner names the variant, and one worker is "1 worker"
def test_the_acer_banner_counts_one_worker_in_the_singular(cartpole_run):
    root, run, result = cartpole_run
    assert banner(result) == (f"Training ACER on CartPole-v1 with 1 worker; run {run}, "
                              f"logs {root / 'Logs' / 'cartpole'}")
    assert "1 workers" not in result.stdout


@pytest.mark.parametrize("flags,variant", [([], "recurrent A3C"),
                                           (["--no_recurrent"], "feed-forward A3C")])
def test_the_a3c_banner_names_the_variant(tmp_path, main_cli, flags, variant):
    result = main_cli(["--do_train", "--algo", "a3c", "--env_name", "CartPole-v1", "--n_workers",
                       "1", "--total_steps", "100", *flags, *dirs(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert banner(result).startswith(f"Training {variant} on CartPole-v1 with 1 worker; run ")


# 2: "an int", "a float", "a bool"
@pytest.mark.parametrize("key,value,message", [
    ("k", "2.5", "--k must be an int, got '2.5'"),
    ("gamma", "abc", "--gamma must be a float, got 'abc'"),
    ("trust_region", "maybe", "--trust_region must be a bool, got 'maybe'"),
])
def test_a_type_error_takes_the_right_article(key, value, message):
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT_YAML, "acer", {key: value})
    assert str(err.value) == message


def test_a_type_error_on_the_command_line_says_an_int(tmp_path, main_cli):
    result = main_cli(["--do_train", "--k", "2.5", *dirs(tmp_path)], tmp_path)
    assert result.returncode == 2 and result.stderr == "error: --k must be an int, got '2.5'\n"


def test_a_type_error_in_a_yaml_file_says_an_int(tmp_path):
    (tmp_path / "mine.yml").write_text("acer:\n  k: 2.5\n")
    with pytest.raises(ConfigError, match=r"mine\.yml: acer\.k must be an int, got 2\.5$"):
        read_yaml_section(str(tmp_path / "mine.yml"), "acer")


def test_one_worker_is_singular_in_the_config_errors(monkeypatch):
    with pytest.raises(ConfigError) as err:
        load_run_config(DEFAULT_YAML, "acer", {"n_workers": 1, "total_memory_size": 10})
    assert "is too small for 1 worker with k=20:" in str(err.value)
    import psutil
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), {"available": 1})())
    cfg = load_config(DEFAULT_YAML, "acer", {"n_workers": 1})
    with pytest.raises(ConfigError) as err:
        check_memory(cfg, get("acer").memory(cfg, (4,), 2, 4, None))
    assert "(1 worker x 0.27 GB + replay" in str(err.value)


# 3: a YAML syntax error names its line and column, in one line
@pytest.mark.parametrize("text,where", [
    # the key whose ':' is missing, not the line where the scanner gave up
    ("acer:\n  lr: 1e-4\n  gamma 0.99\n  k: 20\n",
     "line 3, column 3: could not find expected ':' (while scanning a simple key; "
     "the scan stopped at line 4, column 3)"),
    ("acer:\n  lr: \"1e-4\n  k: 20\n",
     "line 2, column 7: found unexpected end of stream (while scanning a quoted scalar; "
     "the scan stopped at line 4, column 1)"),
    ("acer:\n  lr: 1e-4\n    k: 20\n", "line 3, column 6: mapping values are not allowed here"),
    ("acer:\n\tlr: 1e-4\n", "line 2, column 1: found character '\\t' that cannot start any token"),
    ("acer: [lr: 1\n", "line 2, column 1: expected ',' or ']', but got '<stream end>' "
                       "(while parsing a flow sequence that starts at line 1, column 7)"),
])
def test_a_yaml_syntax_error_names_its_line_and_column(tmp_path, text, where):
    path = tmp_path / "training_configs.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_yaml_section(str(path), "acer")
    assert str(err.value) == f"config file {path} is not valid YAML at {where}"


def test_a_yaml_file_that_is_not_text_is_one_line(tmp_path):
    path = tmp_path / "binary.yml"
    path.write_bytes(b"acer:\n  lr: \xff\xfe\n")
    with pytest.raises(ConfigError) as err:
        read_yaml_section(str(path), "acer")
    assert str(err.value) == (f"config file {path} is not valid YAML at line 2, column 7: "
                              f"byte 0xff is not UTF-8 (invalid start byte)")


def test_a_yaml_syntax_error_on_the_command_line(tmp_path, main_cli):
    (tmp_path / "training_configs.yml").write_text("acer:\n  lr: 1e-4\n  gamma 0.99\n")
    before = tree_snapshot(tmp_path)
    result = main_cli(["--do_train", "--env_name", "CartPole-v1", "--config",
                       "training_configs.yml", *dirs(tmp_path)], tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("error: config file training_configs.yml is not valid YAML at line 3, "
                             "column 3: could not find expected ':' (while scanning a simple key; "
                             "the scan stopped at line 4, column 1)\n")
    assert tree_snapshot(tmp_path) == before


# 4: --resume refuses before it prints what would change
@pytest.mark.parametrize("flags,message", [
    (["--env_name", "Acrobot-v1", "--lr", "2e-4"], "--resume: {run} is a CartPole-v1 run, not Acrobot-v1"),
    (["--lr", "-1"], "--lr must be positive, got -1.0"),
])
def test_resume_refuses_before_it_prints_the_changes(cartpole_run, main_cli, flags, message):
    root, run, _ = cartpole_run
    before = tree_snapshot(root)
    result = main_cli(["--do_train", "--resume", str(run), *flags, *dirs(root)], root)
    assert result.returncode == 2
    assert result.stdout == ""                   # no "resume: env_name CartPole-v1 -> Acrobot-v1"
    assert result.stderr == f"error: {message.format(run=run)}\n"
    assert tree_snapshot(root) == before


def test_resume_still_prints_the_changes_once_the_checks_pass(cartpole_run, main_cli, tmp_path):
    import shutil
    _, run, _ = cartpole_run
    shutil.copytree(run, tmp_path / "Models" / "cartpole")
    result = main_cli(["--do_train", "--resume", str(tmp_path / "Models" / "cartpole"), "--lr",
                       "2e-4", "--total_steps", "400", *dirs(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["resume: total_steps 300 -> 400", "resume: lr 0.0001 -> 2e-4"]
    assert lines[2].startswith("Training ACER on CartPole-v1 with 1 worker; run ")
