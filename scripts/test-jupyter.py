#!/usr/bin/env python3
"""The tritlab Jupyter kernel driven by real Jupyter clients (jupyter_client, nbclient).

Run by scripts/test-jupyter.sh, which installs the kernelspec into a temporary prefix and puts it
on JUPYTER_PATH. Usage: test-jupyter.py WORKBOOKS_DIR NOTEBOOK.ipynb...

Every notebook is executed with the tritlab kernel: every cell must run without error and carry
the MIME types its exported outputs carry. Then a BlockingKernelClient checks completion,
inspection, is_complete, an interrupt during a long generate, a restart, and a request signed
with the wrong key. Prints start-up and round-trip times, and ends with 'N passed, N failed';
exits non-zero if anything failed.
"""

import os
import queue
import statistics
import sys
import time
import json
import tempfile
import pathlib
import traceback

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

KERNEL = "tritlab"
results = {"passed": 0, "failed": 0}


def check(name):
    def run(test):
        started = time.monotonic()
        try:
            test()
        except Exception:  # noqa: BLE001 - every failure is reported, then counted
            results["failed"] += 1
            print(f"FAIL {name} ({time.monotonic() - started:.1f} s)")
            traceback.print_exc()
        else:
            results["passed"] += 1
            print(f"ok   {name} ({time.monotonic() - started:.1f} s)")
        return test

    return run


def mime_types(cell):
    """The MIME types of a cell's outputs; a stream counts as 'stream'."""
    kinds = set()
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            kinds.add("stream")
        elif output["output_type"] == "error":
            kinds.add("error")
        else:
            kinds.update(output.get("data", {}).keys())
    return kinds


def test_notebook(path, workbooks):
    exported = nbformat.read(path, as_version=4)
    expected = [mime_types(c) for c in exported.cells if c.cell_type == "code"]
    assert exported.metadata.kernelspec.name == KERNEL, exported.metadata.kernelspec
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=900,
        allow_errors=False,
        # Workbooks name their data relative to their own folder, as `tritlab run` does.
        resources={"metadata": {"path": workbooks}},
    )
    client.execute()
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for number, (cell, want) in enumerate(zip(code_cells, expected), start=1):
        got = mime_types(cell)
        assert "error" not in got, f"cell {number} failed: {cell.outputs}"
        assert cell.execution_count == number, (number, cell.execution_count)
        # Progress goes to stderr streams live; the typed outputs must match the export.
        assert want - {"stream"} <= got, f"cell {number}: exported {want}, ran {got}"
    return [mime_types(c) for c in code_cells]


def main():
    workbooks, notebooks = sys.argv[1], sys.argv[2:]
    seen = set()

    @check("the kernelspec is installed and names this binary")
    def _():
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        assert os.path.isabs(spec.argv[0]) and os.access(spec.argv[0], os.X_OK), spec.argv
        assert spec.language == "tritlab" and spec.interrupt_mode == "message", spec.to_dict()
        for size in (32, 64):
            assert os.path.isfile(os.path.join(spec.resource_dir, f"logo-{size}x{size}.png"))

    for path in notebooks:
        @check(f"nbclient runs {os.path.basename(path)}")
        def _():
            for kinds in test_notebook(path, workbooks):
                seen.update(kinds)

    @check("a coloured trace is text/html and a weight image image/png")
    def _():
        assert {"text/html", "image/png"} <= seen, seen

    # One kernel for the client tests: start-up time is process start to kernel_info reply.
    started = time.monotonic()
    manager = KernelManager(kernel_name=KERNEL)
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    startup = time.monotonic() - started

    def run(code, timeout=120):
        outputs = []
        reply = client.execute_interactive(
            code, timeout=timeout, output_hook=outputs.append
        )
        return reply["content"], outputs

    @check("execute: a command's text and its execution count")
    def _():
        reply, outputs = run("load default\ninfo")
        assert reply["status"] == "ok", reply
        assert any(m["msg_type"] == "stream" for m in outputs), outputs

    round_trips = []

    @check("a trivial execute round trip")
    def _():
        for _ in range(20):
            t = time.monotonic()
            reply, _ = run("help seek")
            round_trips.append(time.monotonic() - t)
            assert reply["status"] == "ok", reply

    @check("errors carry ename, evalue and traceback")
    def _():
        reply, outputs = run("show no.such.tensor")
        assert reply["status"] == "error" and reply["ename"] and reply["evalue"], reply
        errors = [m for m in outputs if m["msg_type"] == "error"]
        assert errors and errors[0]["content"]["traceback"], outputs

    @check("completion: commands and the loaded model's tensor names")
    def _():
        reply = client.complete("gen", 3, reply=True, timeout=30)["content"]
        assert "generate" in reply["matches"] and reply["cursor_start"] == 0, reply
        code = "show layers.0.self_attn.q"
        reply = client.complete(code, len(code), reply=True, timeout=30)["content"]
        assert any("q_proj" in m for m in reply["matches"]), reply

    @check("inspection is help COMMAND")
    def _():
        reply = client.inspect("generate --max-tokens 3", 3, reply=True, timeout=30)["content"]
        assert reply["found"] and "generate" in reply["data"]["text/plain"], reply

    def reply_to(msg_id, timeout=60):
        while True:
            reply = client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    @check("is_complete: open strings, continuations and :rust blocks")
    def _():
        def status(code):
            return reply_to(client.is_complete(code))["content"]["status"]

        assert status("info") == "complete"
        assert status('generate --prompt "To be') == "incomplete"
        assert status("generate \\") == "incomplete"
        assert status(":rust\nlet x = 1;") == "incomplete"

    @check("history and comm_info")
    def _():
        reply, _ = run("help seek")
        assert reply["status"] == "ok", reply
        reply = client.history(hist_access_type="tail", n=1, reply=True, timeout=30)
        assert reply["content"]["history"][-1][2] == "help seek", reply["content"]
        reply = client.comm_info(reply=True, timeout=30)
        assert reply["content"]["status"] == "ok", reply["content"]

    @check("interrupt cancels a running train at its next step")
    def _():
        # Generating with the default model takes well under a second, too short to interrupt
        # reliably; a long training run is what a stop button is for.
        data = pathlib.Path(__file__).resolve().parent.parent / "workbooks" / "data" / "sonnets.txt"
        run_dir = pathlib.Path(tempfile.mkdtemp()) / "run"
        code = (
            f'train --data "{data}" --train-tokenizer 300 --steps 100000 --seq 32 --batch 4 '
            f'--out "{run_dir}"'
        )
        outputs = []
        msg_id = client.execute(code)
        time.sleep(4)
        interrupted = time.monotonic()
        manager.interrupt_kernel()
        reply = reply_to(msg_id, timeout=120)
        stopped = time.monotonic() - interrupted
        while True:
            try:
                message = client.get_iopub_msg(timeout=2)
            except queue.Empty:
                break
            if message["parent_header"].get("msg_id") == msg_id:
                outputs.append(message)
        content = reply["content"]
        texts = json.dumps([m["content"] for m in outputs])
        assert "cancelled at step" in texts, (content, texts[-2000:])
        print(f"     interrupted, the training run stopped in {stopped:.3f} s")
        assert stopped < 30, stopped
        reply, _ = run("help")
        assert reply["status"] == "ok", reply

    @check("a request signed with the wrong key is dropped; the kernel lives on")
    def _():
        intruder = manager.client()
        intruder.session.key = b"not-the-key"
        intruder.shell_channel.start()
        intruder.execute("help")
        try:
            message = intruder.get_shell_msg(timeout=2)
        except queue.Empty:
            message = None
        intruder.shell_channel.stop()
        assert message is None, message
        reply, _ = run("help load")
        assert reply["status"] == "ok", reply
        assert manager.is_alive()

    @check("restart: a fresh kernel process with a fresh counter")
    def _():
        before = manager.provisioner.process.pid
        manager.restart_kernel(now=False)
        client.wait_for_ready(timeout=60)
        assert manager.provisioner.process.pid != before
        reply, _ = run("help")
        assert reply["status"] == "ok" and reply["execution_count"] == 1, reply

    @check("shutdown: the kernel exits by itself")
    def _():
        client.stop_channels()
        process = manager.provisioner.process
        manager.shutdown_kernel(now=False)
        assert process.poll() is not None
        assert process.returncode == 0, process.returncode

    print(f"kernel start-up (process start to kernel_info reply): {startup * 1000:.0f} ms")
    if round_trips:
        print(
            "trivial execute round trip (`help seek`, 20 runs): "
            f"median {statistics.median(round_trips) * 1000:.1f} ms, "
            f"max {max(round_trips) * 1000:.1f} ms"
        )
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
