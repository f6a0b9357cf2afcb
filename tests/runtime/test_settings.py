"""Connection settings: where each value comes from, and back to flags for a child process."""

from streamsim.runtime.cli import connection_parser, settings_from_args
from streamsim.runtime.settings import Settings


def test_settings_resolve_flags_then_env_then_stack_state(tmp_path):
    (tmp_path / "stack.json").write_text(
        '{"project": "p-state", "instance": "i", "prefix": "s-", "bigtable": {"host": "127.0.0.1:1"},'
        ' "pubsub": {"host": "127.0.0.1:2"}}'
    )
    from_state = Settings.resolve(state_dir=tmp_path, environ={})
    assert (from_state.project, from_state.bigtable_host, from_state.pubsub_host, from_state.prefix) == (
        "p-state",
        "127.0.0.1:1",
        "127.0.0.1:2",
        "s-",
    )
    env = {"STREAMSIM_PROJECT": "p-env", "BIGTABLE_EMULATOR_HOST": "h:3", "STREAMSIM_PUBSUB_HOST": "h:4"}
    from_env = Settings.resolve(state_dir=tmp_path, environ=env)
    assert (from_env.project, from_env.bigtable_host, from_env.pubsub_host) == ("p-env", "h:3", "h:4")
    flagged = Settings.resolve(project="p-flag", bigtable_host="h:5", state_dir=tmp_path, environ=env)
    assert (flagged.project, flagged.bigtable_host) == ("p-flag", "h:5")
    cloud = Settings.resolve(state_dir=tmp_path / "none", environ={})
    assert cloud.bigtable_host is None and cloud.emulator_env() == {}


def test_to_argv_resolves_back_to_the_same_settings(tmp_path):
    settings = Settings(
        project="p",
        instance="i",
        bigtable_host="127.0.0.1:7",
        pubsub_host="127.0.0.1:8",
        prefix="x-",
        state_dir=tmp_path,
        app_profile_id="streamsim",
    )
    args = connection_parser().parse_args(settings.to_argv())
    assert settings_from_args(args) == settings
    cloud = Settings(project="p", instance="i", prefix="x-", state_dir=tmp_path / "none")
    assert "--bigtable-host" not in cloud.to_argv()
    remote = settings.to_argv(remote=True)
    assert remote == ["--project", "p", "--instance", "i", "--prefix", "x-", "--app-profile-id", "streamsim"]
