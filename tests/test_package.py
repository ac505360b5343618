"""The project as a newcomer gets it (issue 20): one CLI that answers --help without torch, the
launch scripts as its commands, shipped configs by name, a wheel that runs from any folder, and
install hints that work when followed literally."""
import ast
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

COMMANDS = ["train", "evaluate", "submit", "aggregate", "report", "predict", "prepare", "verify", "demo", "params",
            "make-data", "inspect-clip"]
HEAVY = ("torch", "deepspeed", "timm", "torchaudio", "decord", "matplotlib")

HELP_WITHOUT_TORCH = """
import contextlib, io, json, sys
import mma_dfer.cli as cli
for argv in [["--help"]] + [[c, "--help"] for c in sys.argv[1:]]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        cli.main(argv)
print(json.dumps([m for m in %r if m in sys.modules]))
""" % (HEAVY,)


def test_the_cli_and_every_commands_help_import_no_torch():
    proc = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH, *COMMANDS], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    # the whole program's help lists every command
    out = subprocess.run([sys.executable, "-m", "mma_dfer", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert all(c in out.stdout for c in COMMANDS), out.stdout


def options(parser) -> set:
    return {o for a in parser._actions for o in a.option_strings} | {a.dest for a in parser._actions
                                                                      if not a.option_strings}


@pytest.mark.parametrize("name, module", [("train", "mma_dfer.training.cli"),
                                          ("evaluate", "mma_dfer.inference.evaluate_checkpoint"),
                                          ("submit", "mma_dfer.cluster.submit"),
                                          ("aggregate", "mma_dfer.experiments.aggregate"), ("report", "mma_dfer.report")])
def test_each_launch_script_is_a_command_with_its_flags(name, module):
    import importlib

    import mma_dfer.cli as cli

    script = (ROOT / f"launch/{name}.py").read_text()
    assert f"from {module} import main" in script  # the script is a thin wrapper of the module
    sub = next(a for a in cli.parser()._actions if a.dest == "command").choices[name]
    standalone = importlib.import_module(module)
    p = standalone.parser() if hasattr(standalone, "parser") else None
    if p is None:  # aggregate and report build theirs in main(): the same add_arguments
        import argparse

        p = argparse.ArgumentParser()
        standalone.add_arguments(p)
    assert options(sub) == options(p)


def test_errors_go_to_stderr(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    for argv in (["inspect-clip", str(bad)], ["prepare", "--dataset", "dfew", "--raw", str(tmp_path / "none"),
                                              "--out", str(tmp_path / "out")],
                 ["params", "--config", "no_such_config"], ["aggregate", str(tmp_path / "none")]):
        proc = subprocess.run([sys.executable, "-m", "mma_dfer", *argv], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        last = proc.stderr.strip().splitlines()[-1]  # (a decoder may print its own lines before ours)
        assert proc.returncode == 2 and last.startswith("error: ") and "error" not in proc.stdout, argv


def test_shipped_configs_resolve_by_name_and_by_path(tmp_path):
    from mma_dfer.config import ConfigError, load_config
    from mma_dfer.resources import ResourceError, config_path, ds_config_path, sweep_path

    assert load_config("dfew_160") == load_config(ROOT / "configs/dfew_160.yaml") == load_config("dfew_160.yaml")
    assert ds_config_path("zero0_bf16") == ds_config_path("zero0_bf16.json") == \
        (ROOT / "ds_configs/zero0_bf16.json").resolve()
    assert sweep_path("table4").read_text() == (ROOT / "configs/sweeps/table4.yaml").read_text()
    assert config_path(ROOT / "configs/demo.yaml") == ROOT / "configs/demo.yaml"  # a path stays a path
    with pytest.raises(ConfigError, match=r"config 'dfew_16': no such file, nor a shipped config \(shipped: demo, "):
        load_config("dfew_16")
    with pytest.raises(ResourceError, match="no such file"):  # a missing path is never swapped for a shipped file
        config_path(tmp_path / "dfew_160.yaml")
    # the six paper configs are one base and what differs
    for d in ("dfew", "mafw"):
        for r in (112, 160, 224):
            cfg = load_config(f"{d}_{r}")
            assert (cfg.data.dataset, cfg.data.resolution, cfg.train.validate_every, cfg.data.num_workers) == (d, r, 1, 8)
            assert cfg.model.video_checkpoint == "checkpoints/mae_face_pretrain_vit_base.pth"


def test_the_default_deepspeed_json_follows_the_device():
    from mma_dfer.resources import ds_config_path
    from mma_dfer.training.ds_config import default_ds_config

    assert (default_ds_config(True), default_ds_config(False)) == ("zero0_bf16", "cpu_fp32")
    assert ds_config_path(default_ds_config(True)).is_file() and ds_config_path(default_ds_config(False)).is_file()


def install_requires() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return ast.literal_eval(next(k.value for k in call.keywords if k.arg == "install_requires"))


def closure(requirements: list[str]) -> set[str]:
    """The distributions an install of ``requirements`` brings (markers evaluated, extras not)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen, todo = set(), [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in md.requires(name) or []]
    return seen


def test_install_hints_work_in_a_venv_of_set_up_command_1():
    """Each hint the code prints: every package it installs with --no-deps must find what its
    metadata requires in what set-up command 1 installed (mma-dfer's install_requires and their
    dependencies) or in the hint itself. (Versions aside: the --no-deps is there because
    facenet-pytorch pins an older torch.) The hint that installed requests without urllib3 fails
    this."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    from mma_dfer.data.prepare_args import MTCNN_HINT

    base = closure(install_requires())
    hints = [MTCNN_HINT] + re.findall(r"(pip install [^`\n\"']+)", (ROOT / "README.md").read_text()
                                      + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md")))
    parts = (part.split("#")[0].strip() for h in hints for part in re.split(r"&&|;|\|", h))
    commands = {part for part in parts if part.startswith("pip install")}
    checked = 0
    for hint in {h for h in commands if "--no-deps" in h}:
        packages = [w for w in hint.split()[2:] if not w.startswith("-") and not w.startswith(".")]
        names = {Requirement(p).name.lower() for p in packages}
        for package in packages:
            for req in map(Requirement, md.requires(Requirement(package).name) or []):
                if req.marker and not req.marker.evaluate({"extra": ""}):
                    continue
                assert req.name.lower().replace("_", "-") in base | names, (hint, req)
            checked += 1
    assert checked >= 1


@pytest.mark.slow
def test_a_built_wheel_runs_the_demo_and_training_from_any_folder(tmp_path):
    import shutil

    dist, site, elsewhere, source = (tmp_path / d for d in ("dist", "site", "elsewhere", "source"))
    elsewhere.mkdir()
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for name in tracked:  # a copy of the checkout: the build's folders stay out of the repository
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_symlink():
            (source / name).symlink_to(os.readlink(ROOT / name))
        elif (ROOT / name).is_file():
            shutil.copy2(ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist),
                            str(source)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheel = next(dist.glob("mma_dfer-*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site), "DS_ACCELERATOR": "cpu"}

    def run(*argv):
        return subprocess.run([sys.executable, *argv], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=900)
    where = run("-c", "import mma_dfer, mma_dfer.resources as r; print(mma_dfer.__file__); print(r.CONFIGS)")
    assert where.stdout.splitlines()[0].startswith(str(site)) and str(ROOT) not in where.stdout, where.stdout
    short = ["--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=2", "--set", "eval.clips=[1]"]
    demo = run("-m", "mma_dfer", "demo", "--data", "demo-data", "--output", "demo-run", *short)
    assert demo.returncode == 0 and "demo: UAR" in demo.stdout, demo.stdout[-2000:] + demo.stderr[-3000:]
    # DeepSpeed's launcher on the installed package (no launch/ folder there)
    launched = run("-m", "deepspeed.launcher.runner", "--num_gpus", "1", "--module", "mma_dfer.training.cli",
                   "--config", "demo", "--deepspeed_config", "cpu_fp32", "--set", "data.root=demo-data",
                   "--set", "output_dir=launched", *short)
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-3000:]
    assert json.loads((elsewhere / "launched/result.json").read_text())["num_test_clips"] == 14


PACKAGE = ROOT / "mma_dfer"


def module_name(path) -> str:
    """``mma_dfer/x/y.py`` -> ``mma_dfer.x.y``; a package's ``__init__.py`` is the package's own node."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(node) -> list[str]:
    """The mma_dfer modules an import statement names: ``from mma_dfer.x import y`` is the module
    ``mma_dfer.x.y`` when y is one, else ``mma_dfer.x``; ``import mma_dfer.x.y`` the longest module."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names]
    else:
        return []
    out = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("mma_dfer.") or name == "mma_dfer":
            out.append(name)
    return out


def file_imports() -> dict:
    """{module: modules of mma_dfer it imports}, every import in the file (function-local ones too)."""
    graph = {}
    for name, path in MODULES.items():
        graph[name] = {t for node in ast.walk(ast.parse(path.read_text())) for t in imported(node) if t != name}
    return graph


def cycles(graph: dict) -> list[list[str]]:
    """The groups of nodes of ``graph`` that import each other, directly or around a circle (its
    strongly connected components of more than one node), each sorted; [] when there is none."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    found = []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(group) > 1:
                found.append(sorted(group))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def package_of(module: str):
    """The package a module belongs to (a top-level module is its own package; None for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else None


def package_imports() -> dict:
    """{package: packages it imports} inside mma_dfer, read off the file graph."""
    graph: dict = {}
    for module, targets in file_imports().items():
        source = package_of(module)
        for target in map(package_of, targets):
            if source and target and target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def test_no_import_cycle_between_files():
    """Function-local imports included: an import hidden in a function is still an edge."""
    found = cycles(file_imports())
    assert not found, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_sees_a_function_local_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]] and cycles({"a": {"b"}, "b": set()}) == []
    node = ast.parse("def f():\n    from mma_dfer.inference import evaluate\n").body[0].body[0]
    assert imported(node) == ["mma_dfer.inference.evaluate"]


def local_imports(tree):
    """The import statements inside a function (at any depth)."""
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for stmt in fn.body:
                yield from (n for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom)))


def test_every_function_local_import_says_why():
    """An import inside a function hides an edge of the graph; it is there only to keep --help and
    the light commands free of torch or an optional package, and says so: ``# lazy: <reason>`` on
    its line, or on the line above it (where the line would be too long)."""
    missing = []
    for path in sorted(MODULES.values()):
        lines = path.read_text().splitlines()
        for node in set(local_imports(ast.parse("\n".join(lines)))):
            above = lines[node.lineno - 2].strip()
            if "# lazy: " not in lines[node.lineno - 1] and not above.startswith("# lazy: "):
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not missing, "function-local imports without a '# lazy: <reason>' comment:\n" + "\n".join(sorted(missing))


def test_architecture_lists_the_package_graph_and_it_has_no_cycle():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = re.search(r"```uses\n(.*?)```", text, re.S).group(1)
    documented = {k.strip(): {v.strip() for v in vs.split(",")} for k, vs in
                  (line.split("->") for line in block.strip().splitlines())}
    graph = package_imports()
    assert graph == documented
    assert "training" not in graph["inference"]
    assert not cycles(graph), cycles(graph)


def test_the_compat_package_keeps_the_old_import_names():
    """``mma_dfer.engine`` is only the old names other tools import (issues 4 and 20)."""
    from mma_dfer.engine.engine import make_optimizer
    from mma_dfer.engine.metrics import uar_war
    from mma_dfer.inference import metrics
    from mma_dfer.training import engine

    assert make_optimizer is engine.make_optimizer and uar_war is metrics.uar_war
    assert uar_war([0, 1, 1, 2], [0, 1, 0, 2], 3) == pytest.approx((100 * (1 + 0.5 + 1) / 3, 75.0))


def test_one_set_flag_for_every_command():
    """``--set KEY=VALUE`` is defined once (config.add_set_flag): every command spells it the same."""
    import mma_dfer.cli as cli

    defining = sorted(str(p.relative_to(ROOT)) for p in [*MODULES.values(), *(ROOT / "bench").glob("*.py")]
                      if re.search(r"add_argument\(\s*\"--set\"", p.read_text()))
    assert defining == ["mma_dfer/config.py"]
    commands = next(a for a in cli.parser()._actions if a.dest == "command").choices
    flags = {name: next(a for a in sub._actions if "--set" in a.option_strings) for name, sub in commands.items()
             if "--set" in options(sub)}
    assert set(flags) == {"train", "evaluate", "submit", "verify", "demo", "params"}
    assert {(a.dest, a.metavar, a.help, tuple(a.default)) for a in flags.values()} == \
        {("overrides", "KEY=VALUE", flags["train"].help, ())}


def test_one_precision_vocabulary():
    """mma_dfer.precision names what a JSON trains in (the identity's field, result.json's key) and
    what --precision evaluates in; torch-free, like the run identity that reads it."""
    from mma_dfer.precision import is_float16, precision_for, precision_of, torch_dtype
    from mma_dfer.resources import ds_config_path

    shipped = {name: precision_of(json.loads(ds_config_path(name).read_text()))
               for name in ("cpu_fp32", "fp32", "cpu_bf16", "zero0_bf16", "zero2_fp16", "zero3_bf16")}
    assert shipped == {"cpu_fp32": "float32", "fp32": "float32", "cpu_bf16": "autocast-bfloat16",
                       "zero0_bf16": "autocast-bfloat16", "zero2_fp16": "autocast-float16",
                       "zero3_bf16": "autocast-bfloat16"}
    assert precision_of({"bf16": {"enabled": True}}) == "bfloat16"
    assert precision_of({"torch_autocast": {"enabled": True, "dtype": "torch.float16"}}) == "autocast-float16"
    assert [precision_for(c, t) for c, t in ((None, "bfloat16"), ("fp32", "bfloat16"), ("bf16", "float16"),
                                            ("fp16", "float32"), ("bf16", "autocast-float16"))] == \
        ["bfloat16", "float32", "bfloat16", "autocast-float16", "autocast-bfloat16"]
    names = set(shipped.values()) | {"float16", "bfloat16"}
    assert sorted(n for n in names if is_float16(n)) == ["autocast-float16", "float16"]  # GPU-only, loss-scaled
    import torch

    assert (torch_dtype("bf16"), torch_dtype("autocast-float16".removeprefix("autocast-"))) == \
        (torch.bfloat16, torch.float16)


def test_the_deepspeed_json_defaults_have_one_owner():
    """ds_config.DEFAULTS fills what a JSON leaves out (the shipped ones hold only ZeRO and
    precision); a user's JSON that turns the timer on keeps it on."""
    from mma_dfer.resources import DS_CONFIGS
    from mma_dfer.training.ds_config import DEFAULTS, with_defaults

    assert not [p.name for p in DS_CONFIGS.glob("*.json") if set(json.loads(p.read_text())) & set(DEFAULTS)]
    assert with_defaults({})["timers"] == {"throughput": {"enabled": False}}
    on = with_defaults({"timers": {"throughput": {"enabled": True}}, "steps_per_print": 10})
    assert on["timers"]["throughput"]["enabled"] is True and on["steps_per_print"] == 10
    assert on["wall_clock_breakdown"] is False


def test_the_house_keeps_its_sizes():
    """Issue 29's limits, so that the next change does not quietly regrow a god class: the trainer
    module under 250 lines, no class over 250 lines, no function over 60."""
    assert len((ROOT / "mma_dfer/training/trainer.py").read_text().splitlines()) < 250
    too_long = []
    for path in sorted((ROOT / "mma_dfer").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            limit = 250 if isinstance(node, ast.ClassDef) else 60
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.end_lineno - node.lineno + 1 > limit:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not too_long, too_long
