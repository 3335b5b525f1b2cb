"""``routed-bedrock evaluate`` end to end against the Bedrock simulator over real HTTP, with scripted answers."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lambdas.router.policy import DEFAULT_POLICY_PATH, load_policy_file
from local_endpoint.bedrock_sim import AnswerScript, BedrockSimulator, Fault, ScriptedAnswer, serve
from routed_bedrock.cli import main

ROOT = Path(__file__).resolve().parents[2]
MICRO = "amazon.nova-micro-v1:0"
STRONG = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
MATH = {f"[m{i}]": str(i * 7) for i in range(1, 6)}
TRIVIA = {f"[t{i}]": answer for i, answer in enumerate(["Paris", "Jupiter", "Au", "Canberra", "Everest"], start=1)}


def small_policy() -> dict:
    """A cheap model ("micro") and an expensive one ("strong"); general -> auto, faq -> fast."""
    shipped = json.loads(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))

    def model(model_id, price, tier, **extra):
        return {
            "model_id": model_id,
            "regions": ["us-east-1"],
            "price_per_1k_input_usd": price,
            "price_per_1k_output_usd": price * 5,
            "context_window_tokens": 100_000,
            "modalities": ["text"],
            "tier": tier,
            **extra,
        }

    return {
        "schema_version": shipped["schema_version"],
        "policy_version": "evaluate-test.1",
        "resilience": shipped["resilience"],
        "models": {
            "micro": model(MICRO, 0.00004, "economy"),
            "strong": model(STRONG, 0.003, "premium", inference_profile_destinations=["us-east-1", "us-west-2"]),
        },
        "routes": {
            "fast": {"candidates": [{"model": "micro"}], "fallbacks": ["strong"], "max_tokens": 256},
            "deep": {"candidates": [{"model": "strong"}], "max_tokens": 2048, "temperature": 0.2},
        },
        "rules": {
            "default_use_case": "general",
            "use_cases": {"general": "auto", "faq": "fast"},
            "tiers": {
                "header": "X-User-Tier",
                "default": "standard",
                "levels": {"standard": {"simple": "fast", "moderate": "deep", "complex": "deep"}},
            },
            "complexity": {
                "moderate_at": 0.25,
                "complex_at": 0.5,
                "length": {"weight": 0.35, "saturation_tokens": 1500},
                "signals": {},
            },
        },
    }


@pytest.fixture(scope="module")
def sim():
    simulator = BedrockSimulator()
    server, _ = serve(simulator, port=0)
    yield simulator, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def admin(url, method, path, body=None):
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode() if body is not None else None, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def simulator(sim):
    """The simulator scripted so micro is right on math and wrong on trivia, and strong right on both."""
    simulator, url = sim
    simulator.faults.clear()
    simulator.calls.reset()
    simulator.answers.clear()
    rules = [{"model": MICRO, "prompt_contains": "[t", "text": "I am not sure, sorry."}]
    rules += [{"prompt_contains": tag, "text": f"Working it out.\n#### {answer}"} for tag, answer in MATH.items()]
    rules += [{"prompt_contains": tag, "text": answer} for tag, answer in TRIVIA.items()]
    for rule in rules:
        assert admin(url, "POST", "/_sim/answers", rule)[0] == 200
    yield simulator
    simulator.faults.clear()
    simulator.answers.clear()


@pytest.fixture
def files(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(small_policy()))
    dataset = tmp_path / "dataset.jsonl"
    lines = [
        {"id": f"m{i}", "prompt": f"{tag} What is {i} times 7?", "reference": f"#### {answer}", "task": "math"}
        for i, (tag, answer) in enumerate(MATH.items(), start=1)
    ]
    lines += [
        {"id": f"t{i}", "prompt": f"{tag} Name it.", "reference": answer, "task": "trivia"}
        for i, (tag, answer) in enumerate(TRIVIA.items(), start=1)
    ]
    dataset.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return {"policy": policy, "dataset": dataset, "out": tmp_path / "out"}


def evaluate_cli(files, url, *extra):
    argv = [
        "evaluate",
        "--dataset",
        str(files["dataset"]),
        "--policy",
        str(files["policy"]),
        "--out",
        str(files["out"]),
    ]
    return main([*argv, "--endpoint-url", url, "--timeout", "5", "--retries", "0", *extra])


def csv_rows(files):
    with (files["out"] / "model_evaluation_results.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_evaluates_end_to_end_and_proposes_the_cheap_model_only_where_it_is_right(capsys, sim, simulator, files):
    # Given the scripted simulator and 5 math + 5 trivia prompts
    _, url = sim
    # When the evaluator runs
    code = evaluate_cli(files, url)
    captured = capsys.readouterr()
    # Then every call answered, one call per prompt and model
    assert code == 0, captured.err
    assert simulator.calls.count(outcome="ok") == 20
    # And the CSV has a row per (prompt, model) with the scores the script implies
    rows = csv_rows(files)
    assert len(rows) == 20 and list(rows[0]) == [
        "id", "task", "model", "model_id", "region", "score", "correct", "latency_ms",
        "input_tokens", "output_tokens", "cost_usd", "stop_reason", "error",
    ]  # fmt: skip
    scores = {(r["task"], r["model"]): set() for r in rows}
    for r in rows:
        scores[(r["task"], r["model"])].add((r["score"], r["correct"], r["error"]))
    assert scores == {
        ("math", "micro"): {("1.0", "true", "")},
        ("math", "strong"): {("1.0", "true", "")},
        ("trivia", "micro"): {("0.0", "false", "")},
        ("trivia", "strong"): {("1.0", "true", "")},
    }
    assert all(r["stop_reason"] == "end_turn" and float(r["cost_usd"]) > 0 for r in rows)
    # And outcomes.jsonl holds one line per prompt with both models' labels
    outcomes = [json.loads(line) for line in (files["out"] / "outcomes.jsonl").read_text().splitlines()]
    assert [o["id"] for o in outcomes] == [*(f"m{i}" for i in range(1, 6)), *(f"t{i}" for i in range(1, 6))]
    assert all(list(o) == ["id", "prompt", "task", "reference", "models"] for o in outcomes)
    assert outcomes[5]["models"]["micro"]["correct"] is False and outcomes[5]["models"]["strong"]["correct"] is True
    # And the proposal picks the cheap model for math and the strong one for trivia
    summary = json.loads((files["out"] / "summary.json").read_text())
    assert {task: p["model"] for task, p in summary["proposal"].items()} == {"math": "micro", "trivia": "strong"}
    assert summary["calls"] == {"total": 20, "answered": 20, "errors": 0}
    assert summary["tasks"]["trivia"]["models"]["micro"]["mean_score"] == 0.0
    # And the proposed policy loads and routes each task to its pick
    proposed = load_policy_file(files["out"] / "proposed_policy.json")
    assert proposed.use_cases["math"] == "eval-math" and proposed.use_cases["trivia"] == "eval-trivia"
    assert [c.model for c in proposed.routes["eval-math"].candidates] == ["micro"]
    assert [c.model for c in proposed.routes["eval-trivia"].candidates] == ["strong"]
    assert proposed.routes["eval-math"].max_tokens == 2048  # new tasks take the auto route's standard/moderate
    # And the table on stdout says so
    table = [line.split() for line in captured.out.splitlines()]
    assert ["math", "micro", "1.000", "micro", "1.000", "1.00x"] in table
    assert ["trivia", "strong", "1.000", "strong", "1.000", "1.00x"] in table


def test_a_rerun_makes_no_calls_and_rebuilds_the_same_outputs(capsys, sim, simulator, files):
    # Given a finished evaluation
    _, url = sim
    assert evaluate_cli(files, url) == 0
    before = (files["out"] / "model_evaluation_results.csv").read_text()
    simulator.calls.reset()
    capsys.readouterr()
    # When it is run again
    code = evaluate_cli(files, url)
    # Then nothing is called and the outputs are rebuilt identically
    assert code == 0
    assert simulator.calls.count() == 0
    assert (files["out"] / "model_evaluation_results.csv").read_text() == before
    assert "20 answered in" in capsys.readouterr().err


def test_failed_calls_are_error_rows_exit_1_and_are_retried_by_the_next_run(capsys, sim, simulator, files):
    # Given the strong model refused
    _, url = sim
    simulator.faults.put(Fault(model=STRONG, error="AccessDeniedException"))
    # When the evaluator runs
    code = evaluate_cli(files, url)
    # Then its calls are error rows, not wrong answers, and the run exits 1
    assert code == 1
    strong_rows = [r for r in csv_rows(files) if r["model"] == "strong"]
    assert len(strong_rows) == 10
    assert all(r["score"] == "" and r["error"].startswith("AccessDeniedException:") for r in strong_rows)
    assert "10 call(s) failed" in capsys.readouterr().out
    # When access is granted and it runs again
    simulator.faults.clear()
    simulator.calls.reset()
    assert evaluate_cli(files, url) == 0
    # Then only the failed calls were made again
    assert simulator.calls.count() == 10 == simulator.calls.count(model=STRONG)
    assert all(r["error"] == "" for r in csv_rows(files))


def test_rejects_a_bad_dataset_line_before_any_call_keeping_the_checkpoint(capsys, sim, simulator, files):
    # Given a finished run's checkpoint, then a dataset with a bad line 4
    _, url = sim
    assert evaluate_cli(files, url) == 0
    checkpoint = (files["out"] / "calls.jsonl").read_bytes()
    lines = files["dataset"].read_text().splitlines()
    lines[3] = '{"id": "m4", "prompt": 4, "reference": "28"}'
    files["dataset"].write_text("\n".join(lines) + "\n")
    simulator.calls.reset()
    capsys.readouterr()
    # When the evaluator runs
    code = evaluate_cli(files, url)
    # Then it exits 2 naming the file and line, calls nothing and leaves the checkpoint as it was
    assert code == 2
    assert f'{files["dataset"]}:4: "prompt" must be a string, got number' in capsys.readouterr().err
    assert simulator.calls.count() == 0
    assert (files["out"] / "calls.jsonl").read_bytes() == checkpoint


def test_rejects_a_changed_prompt_and_an_unknown_model_with_exit_2(capsys, sim, simulator, files):
    _, url = sim
    assert evaluate_cli(files, url, "--models", "micro") == 0
    assert {r["model"] for r in csv_rows(files)} == {"micro"}
    files["dataset"].write_text(files["dataset"].read_text().replace("What is 1 times 7?", "What is 1 + 7?"))
    capsys.readouterr()
    assert evaluate_cli(files, url) == 2
    assert "holds a call for id 'm1' made with another prompt than dataset line 1" in capsys.readouterr().err
    assert evaluate_cli(files, url, "--models", "micro,gpt-9") == 2
    assert "'gpt-9' not in the policy's catalog" in capsys.readouterr().err


def test_shows_progress_on_request_and_nothing_when_quiet(capsys, sim, simulator, files):
    _, url = sim
    assert evaluate_cli(files, url, "--progress", "--models", "micro") == 0
    assert "evaluate: 10/10 calls (100%), 0 error(s)" in capsys.readouterr().err
    (files["out"] / "calls.jsonl").unlink()
    assert evaluate_cli(files, url, "--quiet", "--models", "micro") == 0
    assert capsys.readouterr().err == ""


def test_ctrl_c_exits_130_keeps_finished_calls_and_the_same_command_resumes(capsys, sim, simulator, files):
    # Given every call slow, and the evaluator running in a process of its own
    _, url = sim
    simulator.faults.put(Fault(latency_ms=150))
    argv = ["evaluate", "--dataset", str(files["dataset"]), "--policy", str(files["policy"])]
    argv += ["--out", str(files["out"]), "--endpoint-url", url, "--workers", "2"]
    # Python ignores SIGINT in a child whose parent ignores it (as a test runner's worker may): restore it.
    script = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); from routed_bedrock.cli import main; sys.exit(main(sys.argv[1:]))"  # noqa: E501
    process = subprocess.Popen(
        [sys.executable, "-c", script, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        checkpoint = files["out"] / "calls.jsonl"
        deadline = time.monotonic() + 20
        while not (checkpoint.exists() and checkpoint.read_text().count("\n") >= 2):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        # When it gets Ctrl-C
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # Then it exits 130, says how to resume, and keeps every call it finished
    assert process.returncode == 130, err
    assert "Resume with the same command" in err and "routed-bedrock evaluate --dataset" in err
    finished = checkpoint.read_text().count("\n")
    assert 2 <= finished < 20
    # When the same command runs again
    simulator.faults.clear()
    simulator.calls.reset()
    assert main(argv) == 0
    # Then it makes only the calls that were not finished
    assert simulator.calls.count() == 20 - finished
    assert len(csv_rows(files)) == 20


# --- the simulator's scripted answers -------------------------------------------------------------------


def test_the_answers_admin_api_adds_lists_rejects_and_clears_rules(sim, simulator):
    _, url = sim
    status, body = admin(url, "GET", "/_sim/answers")
    assert status == 200 and len(body["answers"]) == 11
    assert body["answers"][0] == {
        "text": "I am not sure, sorry.",
        "model": MICRO,
        "prompt_contains": "[t",
        "stop_reason": "end_turn",
    }
    status, body = admin(url, "POST", "/_sim/answers", {"text": "x", "stop_reason": "bored"})
    assert status == 400 and "stop_reason must be one of end_turn" in body["message"]
    status, body = admin(url, "POST", "/_sim/answers", {"txt": "x"})
    assert status == 400 and "unknown answer rule field(s): txt" in body["message"]
    assert admin(url, "DELETE", "/_sim/answers") == (200, {"answers": []})


def converse(simulator, model, text, max_tokens=100):
    body = {"messages": [{"role": "user", "content": [{"text": text}]}], "inferenceConfig": {"maxTokens": max_tokens}}
    status, _, payload = simulator.handle("POST", f"/model/{model}/converse", {}, json.dumps(body).encode())
    return status, json.loads(payload)


def test_the_first_matching_rule_answers_and_no_match_keeps_the_canned_answer():
    simulator = BedrockSimulator(
        answers=AnswerScript(
            [
                ScriptedAnswer(model=MICRO, prompt_contains="capital", text="Paris"),
                ScriptedAnswer(prompt_contains="capital", text="Lyon"),
                ScriptedAnswer(prompt_contains="essay", text="word " * 100, stop_reason="end_turn"),
            ]
        )
    )
    _, micro = converse(simulator, MICRO, "The capital of France?")
    _, other = converse(simulator, STRONG, "The capital of France?")
    assert micro["output"]["message"]["content"][0]["text"] == "Paris"
    assert micro["usage"]["outputTokens"] == 2 and micro["stopReason"] == "end_turn"
    assert other["output"]["message"]["content"][0]["text"] == "Lyon"
    # A scripted answer longer than maxTokens is cut there, as a model's would be
    _, cut = converse(simulator, MICRO, "Write an essay", max_tokens=10)
    assert cut["stopReason"] == "max_tokens" and cut["usage"]["outputTokens"] == 10
    assert cut["output"]["message"]["content"][0]["text"] == ("word " * 8)
    # No rule matches: the deterministic canned answer, unchanged
    _, canned = converse(simulator, MICRO, "Hello")
    assert canned["output"]["message"]["content"][0]["text"].startswith(f"[sim {MICRO} @ us-east-1]")


def test_loads_scripted_answers_from_a_file_and_names_the_file_on_errors(tmp_path):
    good = tmp_path / "answers.json"
    good.write_text(json.dumps({"answers": [{"prompt_contains": "hi", "text": "hello"}]}))
    assert AnswerScript.from_file(good).all() == [ScriptedAnswer(prompt_contains="hi", text="hello")]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"answers": [{"text": ""}]}))
    with pytest.raises(ValueError, match=r"answers file '.*bad\.json': answer rule text must be a non-blank"):
        AnswerScript.from_file(bad)
    with pytest.raises(ValueError, match="must hold an object with an 'answers' list"):
        bad.write_text("[]")
        AnswerScript.from_file(bad)


# --- The judge phase ------------------------------------------------------------------------------------------


def script_judge(url: str) -> None:
    """The strong model as judge, scripted ahead of the answers (its message holds the question's tag too):
    INCORRECT on micro's trivia non-answers (right), INCORRECT on the answers to m5 (wrong: 35 is right), a
    non-word on strong's t4 answer (unclear), else CORRECT."""
    rules = [
        {"model": STRONG, "prompt_contains": "I am not sure, sorry.", "text": "INCORRECT"},
        {"model": STRONG, "prompt_contains": "#### 35", "text": "INCORRECT"},
        {"model": STRONG, "prompt_contains": "Canberra", "text": "Maybe."},
        {"model": STRONG, "prompt_contains": "Answer to check", "text": "CORRECT"},
    ]
    existing = admin(url, "GET", "/_sim/answers")[1]["answers"]
    assert admin(url, "DELETE", "/_sim/answers")[0] == 200
    for rule in [*rules, *existing]:
        assert admin(url, "POST", "/_sim/answers", rule)[0] == 200


def test_a_judge_reads_every_answer_and_its_accuracy_is_reported(capsys, sim, simulator, files):
    # Given the scripted answers, and a judge scripted to be wrong on m5 and unclear on one answer
    _, url = sim
    script_judge(url)
    # When the evaluator runs with --judge strong
    code = evaluate_cli(files, url, "--judge", "strong")
    captured = capsys.readouterr()
    # Then the 20 answers were judged: 40 calls in all
    assert code == 0, captured.err
    assert simulator.calls.count(outcome="ok") == 40
    # And the summary gives the judge's accuracy per task and model, unclear verdicts apart
    summary = json.loads((files["out"] / "summary.json").read_text())
    assert summary["judge"]["model"] == "strong"
    tasks = summary["judge"]["tasks"]
    row = {"vetoed": 0, "judged": 5, "unclear": 0, "failed": 0}
    assert tasks["math"]["micro"] == {**row, "agreed": 4, "accuracy": 0.8}
    assert tasks["trivia"]["micro"] == {**row, "agreed": 5, "accuracy": 1.0}
    assert tasks["trivia"]["strong"] == {**row, "unclear": 1, "agreed": 4, "accuracy": 1.0}
    # And each outcome carries the verdict on that answer
    outcomes = {o["id"]: o for o in map(json.loads, (files["out"] / "outcomes.jsonl").read_text().splitlines())}
    assert outcomes["m5"]["models"]["micro"]["judge"] == "incorrect"
    assert outcomes["t1"]["models"]["micro"]["judge"] == "incorrect"
    assert outcomes["t4"]["models"]["strong"]["judge"] == "unclear"
    assert outcomes["m1"]["models"]["strong"]["judge"] == "correct"
    # And the table shows it
    assert ["math", "micro", "0", "5", "0", "0", "80%"] in [line.split() for line in captured.out.splitlines()]
    # And the verdicts are checkpointed: a re-run asks for none
    simulator.calls.reset()
    assert evaluate_cli(files, url, "--judge", "strong") == 0
    assert simulator.calls.count() == 0
    assert (files["out"] / "judge_calls.strong.jsonl").is_file()


def test_a_failed_verdict_exits_1_and_is_asked_again_by_the_next_run(capsys, sim, simulator, files):
    _, url = sim
    script_judge(url)
    assert evaluate_cli(files, url) == 0  # the answers first
    # Given the judge refuses every call
    simulator.faults.put(Fault(model=STRONG, error="ServiceUnavailableException"))
    simulator.calls.reset()
    # When judged: only the 20 verdicts are asked for, all fail
    assert evaluate_cli(files, url, "--judge", "strong") == 1
    assert simulator.calls.count() == 20
    summary = json.loads((files["out"] / "summary.json").read_text())
    assert summary["judge"]["tasks"]["math"]["micro"]["failed"] == 5
    # Then once it answers, the next run asks for them again and exits 0
    simulator.faults.clear()
    capsys.readouterr()
    assert evaluate_cli(files, url, "--judge", "strong") == 0
    summary = json.loads((files["out"] / "summary.json").read_text())
    assert summary["judge"]["tasks"]["math"]["micro"]["accuracy"] == 0.8


def test_an_unknown_judge_is_exit_2_before_any_call(capsys, sim, simulator, files):
    _, url = sim
    assert evaluate_cli(files, url, "--judge", "gpt-judge") == 2
    assert "gpt-judge" in capsys.readouterr().err
    assert simulator.calls.count() == 0


def test_an_answer_the_router_would_veto_is_counted_apart_and_not_judged(sim, simulator, files):
    # Given micro's answer to t2 cut at max_tokens (the router escalates that without asking a judge)
    _, url = sim
    script_judge(url)
    cut = {"model": MICRO, "prompt_contains": "[t2]", "text": "Let me list the planets:", "stop_reason": "max_tokens"}
    existing = admin(url, "GET", "/_sim/answers")[1]["answers"]
    assert admin(url, "DELETE", "/_sim/answers")[0] == 200
    for rule in [cut, *existing]:
        assert admin(url, "POST", "/_sim/answers", rule)[0] == 200
    # When judged
    assert evaluate_cli(files, url, "--judge", "strong") == 0
    # Then 19 verdicts were asked for, and the cut answer is "vetoed", outside the accuracy
    assert simulator.calls.count(outcome="ok") == 20 + 19
    summary = json.loads((files["out"] / "summary.json").read_text())
    assert summary["judge"]["tasks"]["trivia"]["micro"] == {
        "vetoed": 1, "judged": 4, "unclear": 0, "failed": 0, "agreed": 4, "accuracy": 1.0,
    }  # fmt: skip
    outcomes = {o["id"]: o for o in map(json.loads, (files["out"] / "outcomes.jsonl").read_text().splitlines())}
    assert outcomes["t2"]["models"]["micro"]["judge"] == "vetoed"


def test_an_answer_made_by_a_later_run_is_judged_then(sim, simulator, files):
    # Given micro down for the first run: its calls fail, and only strong's answers are judged
    _, url = sim
    script_judge(url)
    simulator.faults.put(Fault(model=MICRO, error="ServiceUnavailableException"))
    assert evaluate_cli(files, url, "--judge", "strong") == 1
    first = json.loads((files["out"] / "summary.json").read_text())["judge"]["tasks"]
    assert set(first["math"]) == {"strong"}
    # When micro answers the next run
    simulator.faults.clear()
    simulator.calls.reset()
    assert evaluate_cli(files, url, "--judge", "strong") == 0
    # Then its 10 answers are made and judged (20 calls), and strong's verdicts are not asked for again
    assert simulator.calls.count(model=MICRO) == 10 and simulator.calls.count() == 20
    tasks = json.loads((files["out"] / "summary.json").read_text())["judge"]["tasks"]
    assert tasks["math"]["micro"]["judged"] == 5 and tasks["math"]["micro"]["accuracy"] == 0.8


def test_a_judge_route_reports_the_accuracy_on_the_answers_in_its_band(capsys, sim, simulator, files):
    # Given a cascade route micro -> strong whose confidence doubts hedged answers (micro's "I am not sure" to
    # trivia: confidence 0.05) and trusts the rest (0.5), with strong as its judge on [0.4, 0.6)
    _, url = sim
    script_judge(url)
    document = small_policy()
    document["routes"]["check"] = {
        "candidates": [{"model": "micro"}, {"model": "strong"}],
        "cascade": {
            "threshold": 0.5,
            "confidence": {"bias": 0.0, "weights": {"hedging": -3.0}},
            "judge": {"model": "strong", "consult_from": 0.4, "consult_below": 0.6},
        },
    }
    files["policy"].write_text(json.dumps(document))
    # When evaluated with --judge-route
    assert evaluate_cli(files, url, "--judge-route", "check") == 0
    # Then the route's judge judged every answer, and the in-band accuracy leaves out micro's trivia answers
    judge = json.loads((files["out"] / "summary.json").read_text())["judge"]
    assert (judge["model"], judge["route"], judge["band"]) == ("strong", "check", [0.4, 0.6])
    tasks = judge["tasks"]
    assert tasks["trivia"]["micro"]["judged"] == 5 and tasks["trivia"]["micro"]["in_band"]["judged"] == 0
    assert tasks["trivia"]["micro"]["in_band"]["accuracy"] is None
    assert tasks["math"]["micro"]["in_band"] == {"judged": 5, "unclear": 0, "failed": 0, "agreed": 4, "accuracy": 0.8}
    assert tasks["trivia"]["strong"]["in_band"]["unclear"] == 1
    assert ["math", "micro", "0", "5", "0", "0", "80%", "5", "80%"] in [
        line.split() for line in capsys.readouterr().out.splitlines()
    ]


@pytest.mark.parametrize("extra", [["--judge-route", "fast"], ["--judge-route", "nowhere"]])
def test_a_judge_route_must_be_a_cascade_with_a_judge(capsys, sim, simulator, files, extra):
    _, url = sim
    assert evaluate_cli(files, url, *extra) == 2
    assert "is not a cascade route with a judge" in capsys.readouterr().err
    assert simulator.calls.count() == 0
