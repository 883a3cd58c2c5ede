"""`homellm run`, `chat` and `--version` as a user runs them: subprocesses."""

import os
import signal
import subprocess
import tempfile
import time

from conftest import HOMELLM, generation_timeout

import homellm

_HOME = tempfile.mkdtemp(prefix="homellm-cli-")


def homellm_cmd(*args: str, input: str | None = None, tokens: int = 0) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, given the time to start and generate up to `tokens` tokens."""
    env = {**os.environ, "HOMELLM_HOME": _HOME}
    return subprocess.run([HOMELLM, *args], input=input, capture_output=True, text=True,
                          timeout=generation_timeout(tokens), env=env)


def test_version_prints_the_package_version():
    result = homellm_cmd("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"homellm {homellm.__version__}"


def test_run_streams_the_answer_to_stdout():
    result = homellm_cmd("run", "--temperature", "0", "--max-tokens", "40", "Name the capital of France.", tokens=40)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_run_takes_a_model_before_the_prompt():
    result = homellm_cmd("run", "smollm2:135m", "What is the capital of Germany?", "--temperature", "0",
                         "--max-tokens", "40", tokens=40)
    assert result.returncode == 0, result.stderr
    assert "Berlin" in result.stdout


def test_run_respects_max_tokens():
    long = homellm_cmd("run", "--temperature", "0", "--max-tokens", "40", "Write a long story about a fox.", tokens=40)
    short = homellm_cmd("run", "--temperature", "0", "--max-tokens", "3", "Write a long story about a fox.", tokens=3)
    assert short.returncode == 0
    assert 0 < len(short.stdout.strip()) < len(long.stdout.strip())
    assert "[stopped at 3 tokens (--max-tokens; 0 for no cap)]" in short.stderr
    assert short.stdout.strip() in long.stdout


def test_run_unknown_model_prints_one_line_and_fails():
    result = homellm_cmd("run", "llama9:900b", "hello")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "llama9:900b" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_missing_gguf_path_fails_clearly(tmp_path):
    result = homellm_cmd("run", str(tmp_path / "absent.gguf"), "hello")
    assert result.returncode == 1
    assert "no GGUF file" in result.stderr


def test_run_prompt_beyond_context_is_refused():
    result = homellm_cmd("run", "--ctx", "64", "word " * 200)
    assert result.returncode == 1
    assert "context" in result.stderr and "--ctx" in result.stderr


def test_bad_port_in_environment_is_one_line(tmp_path):
    env = {**os.environ, "HOMELLM_PORT": "eighty"}
    result = subprocess.run([HOMELLM, "serve"], capture_output=True, text=True, timeout=generation_timeout(0), env=env)
    assert result.returncode == 1
    assert "HOMELLM_PORT" in result.stderr and "Traceback" not in result.stderr


def test_chat_keeps_history_and_leaves_on_bye():
    with_history = homellm_cmd("chat", "--temperature", "0", "--max-tokens", "60",
                               input="My name is Ada.\nWhat is my name?\n/bye\nHi\n", tokens=120)
    without = homellm_cmd("chat", "--temperature", "0", "--max-tokens", "60", input="What is my name?\n", tokens=60)
    assert with_history.returncode == 0, with_history.stderr
    assert with_history.stderr.count(">>> ") == 3  # /bye ended it: the line after was never read
    fresh_answer = without.stdout.strip()
    assert fresh_answer
    # At temperature 0 the same question gets the same answer unless the history differs.
    assert fresh_answer not in with_history.stdout


def test_chat_leaves_on_end_of_input():
    result = homellm_cmd("chat", "--temperature", "0", "--max-tokens", "40", input="Name the capital of France.\n",
                         tokens=40)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_ctrl_c_stops_the_answer_and_chat_goes_on():
    env = {**os.environ, "HOMELLM_HOME": _HOME}
    # With no repeat penalty and no loop guard the first answer repeats one line until Ctrl-C stops it
    # (or the 1,024-token cap, seconds later); the second ends by itself.
    # Ctrl-C as a terminal delivers it, even when this suite runs in the background (where a shell starts
    # commands with SIGINT ignored, and Python then installs no KeyboardInterrupt handler).
    proc = subprocess.Popen([HOMELLM, "chat", "--temperature", "0", "--repeat-penalty", "1", "--loop-guard", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("Write a haiku about rain.\n")
    proc.stdin.flush()
    first = proc.stdout.readline()  # the answer has begun
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    # A fresh conversation: what the stopped answer left in the history depends on when Ctrl-C came.
    out, err = proc.communicate("/clear\nWhat is the capital of Germany?\n/bye\n", timeout=generation_timeout(1024))
    assert proc.returncode == 0, err
    assert first
    assert "[stopped]" in err
    assert "Berlin" in out


def test_serve_says_where_it_listens_and_when_ready(tmp_path):
    from conftest import ServerProcess

    proc = ServerProcess([], tmp_path).wait_ready()
    try:
        deadline = time.monotonic() + 10
        while "ready in" not in proc.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = proc.log.read_text()
    finally:
        proc.stop()
    assert f"serving smollm2:135m at http://127.0.0.1:{proc.port}/v1" in log
    assert "smollm2:135m ready in" in log


def test_serve_refuses_a_keep_alive_that_is_not_a_duration():
    result = homellm_cmd("serve", "--keep-alive", "five minutes", "--port", "1")
    assert result.returncode == 1
    assert "--keep-alive is 'five minutes', not a duration" in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_zero_slots():
    result = homellm_cmd("serve", "--parallel", "0")
    assert result.returncode == 2 and "--parallel" in result.stderr


def test_run_with_experts_in_ram_answers_as_without(tiny_moe_path):
    args = ("run", str(tiny_moe_path), "The capital of France is", "--max-tokens", "12", "--temperature", "0")
    plain = homellm_cmd(*args, tokens=12)
    in_ram = homellm_cmd(*args, "--cpu-moe", tokens=12)
    assert plain.returncode == 0 and in_ram.returncode == 0, in_ram.stderr
    assert in_ram.stdout == plain.stdout
    assert "tensors placed by override: 6 in CPU" in in_ram.stderr


def test_run_reports_an_override_that_matches_nothing_and_refuses_a_bad_one(tiny_dense_path):
    stray = homellm_cmd("run", str(tiny_dense_path), "Hi", "--max-tokens", "2", "--cpu-moe", tokens=2)
    assert stray.returncode == 0 and "matches no tensor of this model" in stray.stderr
    bad = homellm_cmd("run", str(tiny_dense_path), "Hi", "-ot", "blk\\.(=CPU")
    assert bad.returncode == 1 and "not a regular expression" in bad.stderr and "Traceback" not in bad.stderr


def test_run_says_when_the_loop_guard_ended_an_answer():
    # Without the repeat penalty this answer is one line said until the context is full.
    looping = homellm_cmd("run", "--temperature", "0", "--repeat-penalty", "1", "Write a haiku about rain.",
                          tokens=1024)
    assert looping.returncode == 0, looping.stderr
    assert "[stopped: the answer kept repeating itself (--loop-guard 8; 0 turns it off)]" in looping.stderr
    assert looping.stdout.count("\n") < 20
    # The guard ends that answer after about 100 tokens: 160 without it runs past that point.
    unguarded = homellm_cmd("run", "--temperature", "0", "--repeat-penalty", "1", "--loop-guard", "0",
                            "--max-tokens", "160", "Write a haiku about rain.", tokens=160)
    assert "[stopped at 160 tokens" in unguarded.stderr and unguarded.stdout.startswith(looping.stdout.rstrip("\n"))


def test_a_loop_guard_of_one_or_past_1000_and_a_penalty_of_zero_are_refused_before_loading():
    # An unknown model too: the options are refused before any model is looked up or loaded.
    one = homellm_cmd("run", "no-such:model", "hello", "--loop-guard", "1")
    huge = homellm_cmd("run", "--loop-guard", "5000", "hello")
    zero = homellm_cmd("chat", "no-such:model", "--repeat-penalty", "0", input="hello\n")
    for refused, option in ((one, "--loop-guard"), (huge, "--loop-guard"), (zero, "--repeat-penalty")):
        assert refused.returncode == 2 and option in refused.stderr and "Traceback" not in refused.stderr
