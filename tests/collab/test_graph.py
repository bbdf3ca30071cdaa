from collections import Counter

import pytest

from autotts.collab import CollabGraph, GraphController, GraphError, compile_graph, export_graph
from autotts.envs.cross_model import CrossModelEnvironment
from autotts.envs.replay import ReplayEnvironment
from autotts.loading.controller_files import load_controller

CASCADE = """\
name: cascade-1.7b-8b
description: the small model first; the large one only when the small one is unsure
nodes:
  - {id: draft, role: generate, model: Qwen3-1.7B, controller: cmc, beta: 0.3}
  - {id: check, role: escalate, threshold: 0.9}
  - {id: big, role: generate, model: Qwen3-8B, controller: cmc, beta: 0.5}
  - {id: out, role: weighted_vote, weights: {draft: 1.0, big: 2.0}}
edges:
  - [draft, check]
  - [check, big]
  - [draft, out]
  - [big, out]
"""


@pytest.fixture(scope="module")
def cross(env_dir):
    return CrossModelEnvironment.load("aime24", env_dir=env_dir)


def one_node(model="Qwen3-8B", **node):
    return CollabGraph.from_data(
        {"nodes": [{"id": "g", "role": "generate", "model": model, **node}], "edges": []}
    )


def play(env, controller, beta=1.0, questions=range(0, 30, 3), seeds=range(3)):
    params = controller.params(beta)
    return [env.run_episode(controller, params, q, s) for q in questions for s in seeds]


def test_one_generate_node_is_its_controller_on_that_model(cross, env_dir):
    single = ReplayEnvironment.load("Qwen3-8B/aime24", env_dir)
    cmc = load_controller("cmc")
    graph = compile_graph(one_node(controller="cmc", beta=0.5), cross)
    for beta in (1.0, 0.6):
        ours = play(cross, graph, beta)
        theirs = [
            single.run_episode(cmc, cmc.params(0.5 * beta), q, s)
            for q in range(0, 30, 3)
            for s in range(3)
        ]
        assert [(r.answer, r.tokens) for r in ours] == [(r.answer, r.tokens) for r in theirs]
        assert all(r.error is None and r.model_tokens["Qwen3-8B"] == r.tokens for r in ours)


def test_yaml_round_trip_compile_evaluate_export(tmp_path, cross):
    (tmp_path / "cascade.yaml").write_text(CASCADE)
    graph = CollabGraph.load(tmp_path / "cascade.yaml")
    graph.dump(tmp_path / "again.json")
    assert CollabGraph.load(tmp_path / "again.json") == graph
    graph.dump(tmp_path / "again.yml")
    assert CollabGraph.load(tmp_path / "again.yml") == graph
    controller = compile_graph(graph, cross)
    results = play(cross, controller)
    assert all(r.error is None for r in results)
    assert any(r.model_tokens["Qwen3-8B"] for r in results)  # it escalated somewhere
    assert any(not r.model_tokens["Qwen3-8B"] for r in results)  # and not everywhere
    assert all(r.trace for r in results)
    path = export_graph(graph, tmp_path / "cascade_graph.py", header="search: a test")
    exported = load_controller(path)
    assert isinstance(exported, GraphController) and exported.graph == graph
    assert exported.name == "cascade-1.7b-8b"
    again = play(cross, exported)
    assert [(r.answer, r.cost) for r in again] == [(r.answer, r.cost) for r in results]


def test_gates_escalate_and_exit(cross):
    never = CollabGraph.from_data(_cascade(check__threshold=0.0))
    always = CollabGraph.from_data(_cascade(check__threshold=1.0))
    lazy = play(cross, compile_graph(never, cross))
    eager = play(cross, compile_graph(always, cross))
    assert all(r.model_tokens["Qwen3-8B"] == 0 for r in lazy)
    assert all(r.model_tokens["Qwen3-8B"] > 0 for r in eager)
    exit_now = CollabGraph.from_data(
        {
            "nodes": [
                {"id": "a", "role": "generate", "model": "Qwen3-4B", "beta": 0.0},
                {"id": "stop", "role": "early_exit", "threshold": 0.0},
                {"id": "b", "role": "generate", "model": "Qwen3-8B"},
            ],
            "edges": [["a", "stop"], ["stop", "b"]],
        }
    )
    results = play(cross, compile_graph(exit_now, cross))
    assert all(r.model_tokens["Qwen3-8B"] == 0 and r.reason.startswith("stop:") for r in results)


def test_width_and_depth_caps(cross):
    capped = compile_graph(one_node("Qwen3-4B", controller="parallel-probe", max_depth=3), cross)
    for r in play(cross, capped, seeds=range(2)):
        assert r.error is None
        intervals = Counter(i for event, ids, *_ in r.trace if event != "prune" for i in ids)
        assert r.opened == 64 and max(intervals.values()) == 3
    narrow = compile_graph(one_node("Qwen3-4B", controller="sc", width=5), cross)
    assert all(r.opened == 5 for r in play(cross, narrow))


def _yaml(text):
    import yaml

    return yaml.safe_load(text)


def _cascade(**change):
    data = _yaml(CASCADE)
    for path, value in change.items():
        node, field = path.split("__")
        next(n for n in data["nodes"] if n["id"] == node)[field] = value
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        (dict(_yaml(CASCADE), edges=[["draft", "big"], ["big", "draft"], ["big", "out"]]), "cycle"),
        (
            dict(_yaml(CASCADE), edges=[["draft", "check"], ["big", "check"], ["check", "out"]]),
            r"node 'check' \(escalate\) needs exactly one input",
        ),
        (dict(_yaml(CASCADE), edges=[["draft", "out"], ["big", "out"]]), "exactly one output"),
        (dict(_yaml(CASCADE), edges=[["draft", "nowhere"]]), "no node 'nowhere'"),
        (_cascade(big__beta=1.5), r"node 2 \(big\), field beta: Input should be less than or"),
        (_cascade(check__beta=0.5), "role 'escalate' takes no beta"),
        (_cascade(out__weights={"draft": 1, "ghost": 2}), "weights name 'ghost'"),
        (  # valid data; compiling it for replay is refused
            dict(
                _yaml(CASCADE),
                nodes=[
                    *_yaml(CASCADE)["nodes"][:2],
                    {"id": "big", "role": "refine", "model": "Qwen3-8B"},
                    _yaml(CASCADE)["nodes"][3],
                ],
            ),
            None,
        ),
        (dict(_yaml(CASCADE), nodes=_yaml(CASCADE)["nodes"] * 2), "used twice"),
    ],
)
def test_invalid_graphs_are_refused_with_clear_messages(data, message, cross):
    if message is None:
        graph = CollabGraph.from_data(data)
        with pytest.raises(GraphError, match="node 'big' has role 'refine', which needs a live"):
            compile_graph(graph, cross)
        return
    with pytest.raises(GraphError, match=message):
        CollabGraph.from_data(data)


def test_environment_checks_unknown_model_and_budgets(cross, tmp_path):
    with pytest.raises(GraphError, match="node 'g': unknown model 'Qwen3-32B'; this environment"):
        compile_graph(one_node("Qwen3-32B"), cross)
    with pytest.raises(GraphError, match=r"over budget: nodes \['g'\] may open 200 Qwen3-8B"):
        compile_graph(one_node(controller="sc", width=200), cross)
    with pytest.raises(GraphError, match="over budget: running every branch"):
        compile_graph(one_node(controller="sc", width=64), cross, budget=1e15)
    compile_graph(one_node(controller="sc", width=4), cross, budget=1e16)
    with pytest.raises(GraphError, match="unknown controller 'nope'"):
        compile_graph(one_node(controller="nope"), cross)
    (tmp_path / "bad.yaml").write_text("nodes: [")
    with pytest.raises(GraphError, match="bad.yaml: not valid YAML"):
        CollabGraph.load(tmp_path / "bad.yaml")


def test_graph_files_are_checked_evaluated_and_traced_like_controllers(env_dir, tmp_path):
    from autotts.envs.stores import PROJECT_ROOT
    from autotts.evaluation.checker import check_controller
    from autotts.evaluation.evaluator import RunConfig, evaluate
    from autotts.loading.controller_files import ControllerLoadError
    from autotts.results.traces import EpisodeTrace

    path = str(PROJECT_ROOT / "agents" / "graphs" / "vote-4b-8b.yaml")
    env_id = "Qwen3-4B+Qwen3-8B/aime24"
    report = check_controller(path, env_id, env_dir=env_dir, questions=3, seeds=2)
    assert report.ok, report.items
    result = evaluate([RunConfig(path, beta=1.0)], [env_id], seeds=2, env_dir=env_dir, workers=1)
    assert result.rows[0].status == "ok" and result.rows[0].controller == "vote-4b-8b"
    trace = EpisodeTrace.model_validate(result.units[0].traces[0])
    assert trace.env == env_id and trace.cost > 0
    assert len(trace.models) == trace.branches and set(trace.models) <= {"Qwen3-4B", "Qwen3-8B"}
    assert sum(trace.model_tokens.values()) == trace.tokens
    (tmp_path / "broken.yaml").write_text("nodes: []\n")
    with pytest.raises(ControllerLoadError, match=r"broken.yaml: field nodes: List should have"):
        load_controller(tmp_path / "broken.yaml")


def test_live_roles_on_replay_fail_with_a_clear_error(cross):
    graph = CollabGraph.from_data(
        {
            "nodes": [
                {"id": "a", "role": "generate", "model": "Qwen3-4B", "beta": 0.0},
                {"id": "b", "role": "fuse", "model": "Qwen3-8B"},
            ],
            "edges": [["a", "b"]],
        }
    )
    with pytest.raises(GraphError, match="needs a live backend"):
        compile_graph(graph, cross)
    result = cross.run_episode(GraphController(graph), {"scale": 1.0}, 0, 0)
    assert "Generate needs a live backend" in result.error
