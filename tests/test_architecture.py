"""The layout is the architecture: imports flow one way (readers, text → model → runtime → training,
evaluate → CLI; corpora reads with the readers and splits with text), and each on-disk concept has one owner. Read from the source, so a stray import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# Units of the code and their layer: a unit may import only units of lower layers (and itself).
LAYERS: dict[str, float] = {
    "pkg": 0, "errors": 0, "document": 0, "invocation": 0, "formats": 0.5, "corpora": 1.6,
    "_corpus_checksums": 0, "metrics": 0,
    "text": 1, "readers": 1, "writers": 1, "fetch": 1.5,
    "model": 2, "model.ops": 2.1, "model.modules": 2.2, "model.models": 2.3,
    "runtime": 3,
    "evaluate": 4, "training": 4,
    "cli": 5, "__main__": 6,
}
SOURCE_DIRS = {"mambaner_cli": REPO / "mambaner_cli", "mambaner_cli.training": REPO / "training"}


def unit_of(module: str) -> str:
    """``mambaner_cli.model.ops.scan`` → ``model.ops``; ``mambaner_cli.runtime.tagger`` → ``runtime``."""
    parts = module.split(".")[1:]
    if not parts or parts[0] == "__init__":
        return "pkg"
    if parts[0] == "model" and len(parts) > 1 and parts[1] in ("ops", "modules", "models"):
        return f"model.{parts[1]}"
    return parts[0]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCE_DIRS.items():
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder).with_suffix("").parts
            found[".".join((package, *relative)).removesuffix(".__init__")] = path
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """Every mambaner_cli module ``module`` imports, anywhere in the file (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("mambaner_cli.") or name == "mambaner_cli"}


def test_every_unit_has_a_layer():
    assert {unit_of(module) for module in modules()} <= set(LAYERS)


def test_imports_flow_one_way():
    wrong = []
    for module, path in modules().items():
        source = unit_of(module)
        for target in imports_of(module, path):
            if target in ("mambaner_cli", "mambaner_cli.__version__"):
                continue
            unit = unit_of(target)
            if unit != source and LAYERS.get(unit, 99) >= LAYERS[source]:
                wrong.append(f"{module} ({source}) imports {target} ({unit})")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_model_directory_format_has_one_owner():
    """The file names of a model directory appear in runtime/model_dir.py and nowhere else in the code."""
    owner = REPO / "mambaner_cli" / "runtime" / "model_dir.py"
    literals = ('"vocab.json"', '"model.safetensors"', '"lexicon.txt.gz"', 'f"lexicon-', '"head.safetensors"',
                '"training_args.json"', '"metrics.json"', '"mambaner-tagger"')
    for path in modules().values():
        if path == owner:
            continue
        text = path.read_text(encoding="utf-8")
        assert not [literal for literal in literals if literal in text], path
    assert all(literal in owner.read_text(encoding="utf-8") for literal in literals)
