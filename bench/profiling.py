"""Where the time goes: py-spy samples a service process tree (gunicorn or a celery worker and
its children) while a benchmark runs, and the collapsed stacks are summed per function."""

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Frames from these parts of the tree are "ours" in the summary (py-spy names files relative to
# the import path, e.g. "staging/api/dts.py").
OUR_CODE = ("staging/", "stagingsvc/", "tasks/", "bench/")


def is_our_frame(frame: str) -> bool:
    """``frame`` is "function (file:line)"."""
    filename = frame[frame.rfind("(") + 1 :].rpartition(":")[0]
    return "site-packages" not in filename and filename.startswith(OUR_CODE)


class Profiler:
    """``with Profiler(pid, output): ...`` records the process and its children until the block
    ends; a no-op (``enabled=False``) keeps call sites simple when profiling is off."""

    def __init__(self, pid: int, output: Path, *, enabled: bool = True, rate: int = 200):
        self.pid, self.output, self.rate = pid, output, rate
        self.enabled = enabled
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Profiler":
        if not self.enabled:
            return self
        beside_python = Path(sys.executable).parent / "py-spy"
        py_spy = str(beside_python) if beside_python.exists() else shutil.which("py-spy")
        if py_spy is None:
            raise RuntimeError("py-spy is not installed: pip install -r bench/requirements.txt")
        self.process = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(self.pid),
                "--subprocesses",
                "--nonblocking",
                "--function",
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                str(self.output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def summarise_collapsed(text: str, *, top: int = 15) -> dict:
    """Share of samples per function: ``self`` (on top of the stack: where the time is spent,
    C calls included) and ``ours`` (our functions anywhere on the stack: which of our code paths
    it is spent under), each as [(frame, percent)]."""
    ours: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    in_our_code = 0
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # Process and thread headers that py-spy puts first are not code.
        code = [frame for frame in stack.split(";") if "(" in frame]
        if not code:
            continue
        total += count
        self_time[code[-1]] += count
        our_frames = {frame for frame in code if is_our_frame(frame)}
        for frame in our_frames:
            ours[frame] += count
        if our_frames:
            in_our_code += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(frame, round(100 * n / total, 1)) for frame, n in counter.most_common(top)]

    return {
        "samples": total,
        "self": shares(self_time) if total else [],
        "ours": shares(ours) if total else [],
        "our_code_percent": round(100 * in_our_code / total, 1) if total else 0.0,
    }


def summarise_file(path: Path, *, top: int = 15) -> dict:
    if not path.exists():
        return {"samples": 0, "self": [], "ours": [], "our_code_percent": 0.0}
    summary = summarise_collapsed(path.read_text(errors="replace"), top=top)
    summary["file"] = str(path)
    return summary


def format_summary(title: str, summary: dict) -> str:
    lines = [f"profile: {title} ({summary['samples']} samples, {summary.get('file', '')})"]
    lines.append(f"  in our code (anywhere on the stack): {summary['our_code_percent']}%")
    lines.append("  self time:")
    lines += [f"    {share:5.1f}%  {frame}" for frame, share in summary["self"]]
    lines.append("  under our functions:")
    lines += [f"    {share:5.1f}%  {frame}" for frame, share in summary["ours"]]
    return "\n".join(lines)
