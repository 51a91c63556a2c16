"""``openledger dvc install | uninstall | status``: the record stage in each ``dvc.yaml`` and the git hook.

The record stage is inserted as text, at the end of the ``stages:`` mapping, so the rest of ``dvc.yaml``
(comments, ordering, quoting) is untouched and uninstall removes exactly the lines install added. It depends on
the pipeline's terminal outputs (outs no other stage of that file consumes), so DVC runs it last, and
``always_changed: true`` makes it run on every ``dvc repro`` / ``dvc exp run``, never restored from the run
cache. Its command fails open: a teammate without OpenLedger installed still gets a working ``dvc repro``.

The ``post-commit`` hook goes where git looks for hooks (``core.hooksPath`` respected). A hook already there
is kept beside ours as ``post-commit.pre-openledger``, runs first, and its exit status is the hook's;
uninstall moves it back. ``dvc install`` (post-checkout, pre-commit, pre-push) is never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dvc_hooks.lockfile import RECORD_STAGE
from dvc_hooks.project import DvcProject
from openledger.errors import BadInputError
from openledger.lineage.git import git_run
from openledger.store.files import write_atomic
from openledger.store.ledger import Ledger

__all__ = ["HOOK_MARKER", "InstallReport", "install", "terminal_outputs", "uninstall"]

HOOK_MARKER = "# openledger post-commit hook"
CHAINED_SUFFIX = ".pre-openledger"
RECORD_CMD = ("if command -v openledger >/dev/null 2>&1; then openledger dvc record-stage; "
              "else echo 'OpenLedger is not installed: this repro is not recorded "
              "(pip install openledger-mlops)' >&2; fi")
_STAGE_COMMENT = "# added by `openledger dvc install`: signs each repro into .openledger/ (keep it last)"
_SAFE_SCALAR = re.compile(r"[A-Za-z0-9_./@+-]+")


@dataclass
class InstallReport:
    pipelines: dict[str, str] = field(default_factory=dict)  # dvc.yaml -> added | updated | unchanged | no-stages
    hook: str = ""
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- dvc.yaml


def terminal_outputs(project: DvcProject, pipeline: str) -> tuple[list[str], list[str]]:
    """The outputs of ``pipeline``'s stages that no other stage there consumes, relative to its directory;
    and the names of stages with no outputs at all (the record stage cannot be ordered after those).

    DVC's own index resolves ``foreach``/``matrix`` and ``${}`` templating.
    """
    try:
        from dvc.exceptions import DvcException
        from dvc.repo import Repo
    except ImportError:
        raise BadInputError("DVC is not installed in this environment",
                            hint="pip install 'openledger-mlops[dvc]'") from None

    base = project.root / PurePosixPath(pipeline).parent
    dvcfile = (project.root / pipeline).resolve()
    try:
        with Repo(str(project.root)) as repo:
            stages = [s for s in repo.index.stages
                      if Path(s.path).resolve() == dvcfile and getattr(s, "name", None) != RECORD_STAGE]
            outs = [(s.name, Path(o.fs_path)) for s in stages for o in s.outs]
            deps = [Path(d.fs_path) for s in stages for d in s.deps]
    except DvcException as exc:
        raise BadInputError(f"DVC cannot read {pipeline}: {exc}", hint=f"fix {pipeline}; `dvc status` shows "
                            "the same problem") from None
    terminal = []
    for _, out in outs:
        consumed = any(dep == out or out in dep.parents or dep in out.parents for dep in deps)
        if not consumed:
            terminal.append(os.path.relpath(out, base).replace(os.sep, "/"))
    with_outs = {name for name, _ in outs}
    silent = sorted({str(getattr(s, "name", s)) for s in stages} - with_outs)
    return sorted(set(terminal)), silent


def _scalar(text: str) -> str:
    return text if _SAFE_SCALAR.fullmatch(text) else json.dumps(text)


def stages_block(lines: list[str]) -> tuple[int, int, str] | None:
    """Where the ``stages:`` mapping's entries end (insert index), where it starts, and its indentation."""
    start = next((i for i, line in enumerate(lines) if re.match(r"stages\s*:\s*(#.*)?$", line.rstrip("\n"))),
                 None)
    if start is None:
        return None
    indent = None
    end = start + 1
    for i in range(start + 1, len(lines)):
        text = lines[i].rstrip("\n")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if not text[0].isspace():
            break
        if indent is None:
            indent = text[: len(text) - len(text.lstrip())]
        end = i + 1
    if indent is None:
        return None
    return end, start, indent


def our_stage(lines: list[str]) -> tuple[int, int] | None:
    """The line range of the record stage install wrote (its key line through its last indented line)."""
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{RECORD_STAGE}:"):
            key_indent = len(line) - len(line.lstrip())
            end = i + 1
            while end < len(lines):
                text = lines[end].rstrip("\n")
                if text.strip() and len(text) - len(text.lstrip()) <= key_indent:
                    break
                end += 1
            while end > i + 1 and not lines[end - 1].strip():  # trailing blank lines are not ours
                end -= 1
            return i, end
    return None


def render_stage(indent: str, deps: list[str]) -> list[str]:
    inner = indent * 2
    lines = [f"{indent}{RECORD_STAGE}:  {_STAGE_COMMENT}\n", f"{inner}cmd: {json.dumps(RECORD_CMD)}\n"]
    if deps:
        lines.append(f"{inner}deps:\n")
        lines += [f"{inner}- {_scalar(dep)}\n" for dep in deps]
    lines.append(f"{inner}always_changed: true\n")
    return lines


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text("utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read {path}: {exc}") from None


def _write_text(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    write_atomic(path, text.encode("utf-8"))
    path.chmod(mode)


def _without_stage(project: DvcProject, lines: list[str]) -> tuple[list[str], bool]:
    """``lines`` as they were before install: the record stage removed, and the newline install had to add to
    the last line before it taken away again. Also whether there was a stage to remove."""
    ours = our_stage(lines)
    if ours is None:
        return list(lines), False
    rest = lines[:ours[0]] + lines[ours[1]:]
    if ours[0] > 0 and rest[ours[0] - 1].endswith("\n") and _added_newline(project, rest):
        rest[ours[0] - 1] = rest[ours[0] - 1][:-1]
    return rest, True


def install_stage(project: DvcProject, pipeline: str) -> tuple[str, list[str]]:
    """Add (or bring up to date) the record stage of one ``dvc.yaml``.
    Returns what happened (``added``, ``updated``, ``unchanged`` or ``no-stages``) and warnings."""
    path = project.root / pipeline
    before = read_lines(path)
    lines, existed = _without_stage(project, before)
    block = stages_block(lines)
    if block is None:
        return "no-stages", [f"{pipeline} has no stages: nothing to record there"]
    deps, silent = terminal_outputs(project, pipeline)
    end, _, indent = block
    added_newline = not lines[end - 1].endswith("\n")
    if added_newline:
        lines[end - 1] += "\n"
    rest = list(lines)
    lines[end:end] = render_stage(indent, deps)
    warnings = [f"{pipeline}: stage {name} has no outputs, so the record stage may run before it; "
                "its dvc.lock entry is recorded by the next repro" for name in silent]
    if lines == before:
        return "unchanged", warnings
    _write_text(path, "".join(lines))
    if added_newline:
        _remember_newline(project, rest)
    return ("updated" if existed else "added"), warnings


def uninstall_stage(project: DvcProject, pipeline: str) -> bool:
    path = project.root / pipeline
    lines, changed = _without_stage(project, read_lines(path))
    if changed:
        _write_text(path, "".join(lines))
    lock = path.parent / "dvc.lock"
    if lock.exists():
        lock_lines = read_lines(lock)
        entry = our_stage(lock_lines)
        if entry is not None:
            del lock_lines[entry[0]:entry[1]]
            _write_text(lock, "".join(lock_lines))
            changed = True
    return changed


def _state_path(project: DvcProject) -> Path:
    return project.git_dir / "openledger-dvc-install.json"


def _fingerprint(lines: list[str]) -> str:
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def _marked(project: DvcProject) -> list[str]:
    try:
        marked = json.loads(_state_path(project).read_text("utf-8")).get("added_newline", [])
        return [str(m) for m in marked] if isinstance(marked, list) else []
    except (OSError, ValueError, AttributeError):
        return []


def _added_newline(project: DvcProject, rest: list[str]) -> bool:
    """Whether install had to end the last line before the record stage with a newline. Install notes the
    file it wrote (its content without the stage) in the repository's git directory: local, never committed."""
    return _fingerprint(rest) in _marked(project)


def _remember_newline(project: DvcProject, rest: list[str]) -> None:
    marked = sorted({*_marked(project), _fingerprint(rest)})
    write_atomic(_state_path(project), json.dumps({"added_newline": marked}).encode())


# ---------------------------------------------------------------------------------------------- git hook


def hooks_dir(project: DvcProject) -> Path:
    found = git_run(project.root, "rev-parse", "--git-path", "hooks")
    if found.returncode != 0:
        raise BadInputError(f"cannot find the git hooks directory of {project.root}: {found.stderr.strip()}")
    out = found.stdout.strip()
    path = Path(out)
    return path if path.is_absolute() else (project.root / path)


def hook_script() -> str:
    python = shlex.quote(sys.executable)
    return f"""#!/bin/sh
{HOOK_MARKER}: binds what was recorded to each new commit.
# Installed by `openledger dvc install`; `openledger dvc uninstall` removes it and restores any hook it replaced.
# A hook that was here before runs first, as post-commit{CHAINED_SUFFIX}, and its exit status is kept.
hook_dir=$(dirname "$0")
status=0
if [ -x "$hook_dir/post-commit{CHAINED_SUFFIX}" ]; then
    "$hook_dir/post-commit{CHAINED_SUFFIX}" "$@" || status=$?
fi
{python} -m openledger_cli dvc post-commit || echo "openledger: this commit was not bound to the ledger" >&2
exit $status
"""


def install_hook(project: DvcProject) -> str:
    directory = hooks_dir(project)
    directory.mkdir(parents=True, exist_ok=True)
    hook = directory / "post-commit"
    chained = directory / f"post-commit{CHAINED_SUFFIX}"
    script = hook_script()
    if hook.exists() and HOOK_MARKER not in read_hook(hook):
        if chained.exists():
            raise BadInputError(f"{hook} and {chained} both exist",
                                hint=f"merge them by hand, or remove {chained.name}")
        hook.replace(chained)  # the user's hook, bytes and mode kept
    if hook.exists() and read_hook(hook) == script:
        return f"{hook} (already installed)"
    write_atomic(hook, script.encode())
    hook.chmod(0o755)
    return str(hook) + (f" (runs the existing hook first: {chained.name})" if chained.exists() else "")


def read_hook(path: Path) -> str:
    try:
        return path.read_text("utf-8", errors="replace")
    except OSError:
        return ""


def uninstall_hook(project: DvcProject) -> bool:
    directory = hooks_dir(project)
    hook = directory / "post-commit"
    chained = directory / f"post-commit{CHAINED_SUFFIX}"
    if not hook.exists() or HOOK_MARKER not in read_hook(hook):
        return False
    if chained.exists():
        chained.replace(hook)
    else:
        hook.unlink()
    return True


# ---------------------------------------------------------------------------------------------- commands


def install(project: DvcProject) -> InstallReport:
    Ledger.open(project.root / ".openledger")  # a clear error, before anything is changed, when there is none
    report = InstallReport()
    for pipeline in project.pipeline_files():
        outcome, warnings = install_stage(project, pipeline)
        report.pipelines[pipeline] = outcome
        report.warnings += warnings
    report.hook = install_hook(project)
    return report


def uninstall(project: DvcProject) -> tuple[list[str], bool]:
    changed = [p for p in project.pipeline_files() if uninstall_stage(project, p)]
    return changed, uninstall_hook(project)
