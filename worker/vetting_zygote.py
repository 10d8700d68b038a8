"""The vetting zygote: a clean interpreter that imports what vetting needs once, then forks one child per file.

Started by :func:`worker.model_vetting.zygote` as a fresh isolated process
(``python -I``, the child environment, an empty working directory, ``nice``,
one torch thread), it imports torch, onnx, onnx2torch and the vetting code,
then serves a Unix socket and never vets anything itself. For each connection
it makes an empty directory and forks: the child (:func:`_serve_one`) puts
itself in a process group of its own, moves into that directory, sends its pid,
reads the request and the file, sets its caps and vets (:func:`worker.model_vetting.vet_confined`),
and sends its answer. The zygote reaps it, removes its directory and closes
the connection with the child's exit status, so a child killed by any signal
is still told apart from one that answered. Every child starts from the same
clean state after the imports, and none sees another's file.

Protocol on one connection: the parent sends one JSON line (the request) and
the file, then shuts its side; the child sends ``pid <n>\\n``, then, if it got
that far, ``reply <length>\\n`` and the answer; the zygote ends with
``exit <returncode>\\n`` (negative: killed by that signal, as ``subprocess`` has it).
"""

import os
import select
import shutil
import socket
import sys
import tempfile
from pathlib import Path


def main(socket_path: str) -> None:
    """Import, listen at ``socket_path``, say ``ready`` on stdout, then fork one child per connection until stdin closes."""
    from worker.model_vetting import prepare_vetting_process

    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what the imports, or any child, print goes to stderr: stdout says only "ready"
    prepare_vetting_process()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(16)
    ready.write("ready\n")
    ready.close()
    children: dict[int, tuple[socket.socket, Path]] = {}
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [], 0.05)
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1):
            break  # the parent is gone: stop serving
        if listener in readable:
            connection, _ = listener.accept()
            workdir = Path(tempfile.mkdtemp(prefix="convlens-vetting-"))
            (workdir / "cwd").mkdir()
            pid = os.fork()
            if pid == 0:
                listener.close()
                for other, _ in children.values():
                    other.close()
                _serve_one(connection, workdir / "cwd")  # never returns
            children[pid] = (connection, workdir)
        _reap(children)
    for pid, (_connection, workdir) in children.items():
        os.killpg(pid, 9)
        shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(Path(socket_path).parent, ignore_errors=True)  # its home: the socket, and its children's directories


def _reap(children: dict[int, tuple[socket.socket, Path]]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        connection, workdir = children.pop(pid)
        shutil.rmtree(workdir, ignore_errors=True)
        try:
            connection.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
        except OSError:
            pass  # the parent gave up on it
        connection.close()


def _serve_one(connection: socket.socket, cwd: Path) -> None:
    from worker.model_vetting import vet_confined

    code = 1
    try:
        os.setpgid(0, 0)
        os.chdir(cwd)
        connection.sendall(f"pid {os.getpid()}\n".encode())
        stream = connection.makefile("rb")
        request = stream.readline()
        data = stream.read()
        answer = vet_confined(request, data)
        connection.sendall(f"reply {len(answer)}\n".encode() + answer)
        code = 0
    finally:
        os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1])
