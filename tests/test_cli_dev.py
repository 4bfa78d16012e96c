"""`klubpost dev` (what `make run` ends with): serves the app and runs the scheduler."""

import pytest

import klubpost.cli


class FakeScheduler:
    started: list[dict] = []

    def __init__(self, args, env):
        self.args, self.env = args, env
        FakeScheduler.started.append(env)
        self.stopped = False

    def terminate(self):
        self.stopped = True

    def wait(self, timeout=None):
        return 0


@pytest.fixture
def served(monkeypatch):
    calls = []
    FakeScheduler.started = []
    monkeypatch.setattr(klubpost.cli.subprocess, "Popen", FakeScheduler)
    monkeypatch.setattr(
        "werkzeug.serving.run_simple",
        lambda host, port, app, **kw: calls.append((host, port, app, kw)),
    )
    monkeypatch.delenv("BASE_URL", raising=False)
    return calls


def test_dev_serves_on_the_given_port_with_links_to_it(app, runner, served):
    result = runner.invoke(args=["dev", "--port", "5077"])
    assert result.exit_code == 0, result.output
    ((host, port, served_app, options),) = served
    assert (host, port, served_app) == ("127.0.0.1", 5077, app)
    assert options["use_reloader"] is False
    assert "Klubpost is at http://127.0.0.1:5077" in result.output
    assert app.config["BASE_URL"] == "http://127.0.0.1:5077"
    (scheduler_env,) = FakeScheduler.started
    assert scheduler_env["BASE_URL"] == "http://127.0.0.1:5077"


def test_dev_keeps_a_configured_base_url(app, runner, served, monkeypatch):
    monkeypatch.setenv("BASE_URL", "https://post.bibliotek.dk")
    app.config["BASE_URL"] = "https://post.bibliotek.dk"
    result = runner.invoke(args=["dev", "--port", "5078"])
    assert result.exit_code == 0, result.output
    assert served[0][1] == 5078
    assert app.config["BASE_URL"] == "https://post.bibliotek.dk"
