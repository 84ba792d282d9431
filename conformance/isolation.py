"""Running a target in a worker process, so that nothing it does can take the harness down or change a verdict.

The worker loads the target itself (imports, adapter) and runs each call; the checks run in the harness, on the
outputs the worker sends back. So a target that segfaults, aborts, calls `os._exit` or `sys.exit`, hangs, floods
stdout, changes torch's global state or patches lmspec, torch or the reference only affects its own process: the
harness sees a `crash` or a `timeout`, restarts the worker for the next example, and computes every verdict where
the target's code cannot reach.

Protocol (one request at a time over a pipe): the harness sends ("load", ...), ("call", handle,
attribute, args, kwargs), ("getattr", handle, name), ("next", handle). Values cross as pickles when they are plain
data (tensors, numbers, strings, containers, dtypes, generators); anything else the target returns (a tokenizer
object, a bound method, a generator) stays in the worker and crosses as a `Ref`, which the harness wraps in a
`RemoteObject` whose calls go back to the worker. A callable the harness passes (a model for a decoder) crosses as a
`Callback`: the worker asks the harness to run it, and the harness answers while it waits for the result.

On Linux a worker is forked from the harness, so it starts in milliseconds with the target already imported;
elsewhere it comes from a forkserver that has torch and lmspec imported.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import io
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass
from typing import Any, Callable

import torch

from lmspec.spec.backward import run_backward
from lmspec.spec.core import Violation
from lmspec.spec.guard import (TargetUnsupported, declines, global_state, leaves, restore_global_state, same_values,
                               tensors_in)

#: harness-side: the last few KB a worker wrote to stdout/stderr, shown with a crash.
OUTPUT_TAIL_BYTES = 4096
#: errors after which a worker is not trusted for the next example (the CUDA context may be unusable)
POISONING_ERRORS = ("CUDA error", "out of memory", "CUBLAS_STATUS", "cuDNN error", "device-side assert")
#: items of an iterator the target returned that cross in one round trip
NEXT_BATCH = 64
#: imported once by the forkserver (platforms without fork), so its workers start with them
_PRELOAD = ("torch", "lmspec.spec", "lmspec.conformance.isolation", "lmspec.conformance.loading")
_CONTEXT: multiprocessing.context.BaseContext | None = None


def _context():
    """Workers are forked from the harness on Linux: they start in milliseconds with the target and torch already
    imported (the harness loaded the target to read its declarations). Elsewhere, a forkserver that preloads
    torch and lmspec."""
    global _CONTEXT
    if _CONTEXT is None:
        if sys.platform.startswith("linux"):
            _CONTEXT = multiprocessing.get_context("fork")
        else:
            _CONTEXT = multiprocessing.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(list(_PRELOAD))
    return _CONTEXT


@dataclass(frozen=True)
class Ref:
    """A value that stays in the worker (an object, a callable, an iterator): its handle there, and the names of
    its public methods (called without first asking the worker what the attribute is)."""

    handle: int
    type_name: str
    methods: frozenset = frozenset()


@dataclass(frozen=True)
class AliasOf:
    """An output tensor that is a view of input tensor #index (it shares its storage): the harness rebuilds the view
    on its own input, so a check of aliasing (a view, an in-place op) sees what the target did."""

    index: int
    dtype: torch.dtype
    shape: tuple
    stride: tuple
    offset: int


@dataclass(frozen=True)
class Callback:
    """A harness-side callable passed to the target: the worker asks the harness to run it."""

    id: int


_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.dtype, torch.device, torch.Size,
                 torch.Generator, range, slice, type(Ellipsis))


def _is_plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _PLAIN_LEAVES):
        return True
    if depth > 8:
        return False
    if type(value) in (list, tuple, set, frozenset):
        return all(_is_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


# --- the worker -----------------------------------------------------------------------------------------------


def _rebuild_tensor(data: bytes, dtype: torch.dtype, shape: tuple, stride: tuple, offset: int) -> torch.Tensor:
    storage = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    return storage.view(dtype).as_strided(shape, stride, offset) if data else torch.empty(shape, dtype=dtype)


class _Pickler(pickle.Pickler):
    """Plain pickle, not multiprocessing's (its torch reductions move tensors into shared memory, where the target
    could write into the harness's own tensors), with CPU tensors as their storage's bytes plus shape, strides and
    offset: the layout the harness chose (transposed, offset, strided) arrives as it was, at a third of
    torch's own pickling cost."""

    def reducer_override(self, obj):
        if type(obj) is torch.Tensor and obj.device.type == "cpu" and obj.layout == torch.strided and not obj.requires_grad:
            raw = torch.empty(0, dtype=torch.uint8).set_(obj.untyped_storage())
            return _rebuild_tensor, (raw.numpy().tobytes(), obj.dtype, tuple(obj.shape), obj.stride(), obj.storage_offset())
        return NotImplemented


@functools.lru_cache(maxsize=256)
def _methods(cls: type) -> frozenset:
    return frozenset(n for n in dir(cls) if not n.startswith("_") and inspect.isroutine(getattr(cls, n, None)))


def _send(conn, message: Any) -> None:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    conn.send_bytes(buffer.getbuffer())


def _recv(conn) -> Any:
    return pickle.loads(conn.recv_bytes())


class _Worker:
    """The worker's side: the target, the objects it returned, and the loop that serves requests."""

    def __init__(self, conn):
        self.conn = conn
        self.objects: dict[int, Any] = {}  # what targets returned during the current example, and the targets
        self.targets: set[int] = set()
        self.next_handle = 1
        self.baseline = global_state()

    def encode(self, value: Any, inputs: dict | None = None) -> Any:
        """Plain data by value; a tensor sharing an input's storage (`inputs`: storage pointer -> input index) as an
        AliasOf; anything else stays here behind a Ref."""
        if inputs and isinstance(value, torch.Tensor) and value.layout == torch.strided:
            index = inputs.get(value.untyped_storage().data_ptr())
            if index is not None:
                return AliasOf(index, value.dtype, tuple(value.shape), value.stride(), value.storage_offset())
        if type(value) in (list, tuple):
            return type(value)(self.encode(v, inputs) for v in value)
        if type(value) is dict:
            return {k: self.encode(v, inputs) for k, v in value.items()}
        if _is_plain(value):
            return value
        handle = self.next_handle
        self.next_handle += 1
        self.objects[handle] = value
        return Ref(handle, type(value).__name__, _methods(type(value)))

    def decode(self, value: Any) -> Any:
        if isinstance(value, Callback):
            return self._callback(value.id)
        if isinstance(value, Ref):
            return self.objects[value.handle]
        if type(value) in (list, tuple):
            return type(value)(self.decode(v) for v in value)
        if type(value) is dict:
            return {k: self.decode(v) for k, v in value.items()}
        return value

    def _callback(self, callback_id: int) -> Callable:
        def call_harness(*args, **kwargs):
            _send(self.conn, ("callback", callback_id, self.encode(args), self.encode(kwargs)))
            status, payload = _recv(self.conn)
            if status == "raised":
                raise RuntimeError(f"the harness's callable raised {payload}")
            return payload

        return call_harness

    def serve(self) -> None:
        while True:
            try:
                request = _recv(self.conn)
            except EOFError:
                return
            _send(self.conn, self.handle(request))

    def handle(self, request: tuple) -> tuple:
        op = request[0]
        try:
            if op == "load":
                from .loading import load_target

                path, component, adapter, threads, cwd = request[1:]
                if os.getcwd() != cwd:  # a warm worker started before the harness changed directory imports from there
                    os.chdir(cwd)
                if not self.targets:  # the state as the harness had it: what every example starts from
                    torch.set_num_threads(threads)
                    self.baseline = global_state()
                restore_global_state(self.baseline)  # an earlier target's changes do not reach this one's import
                target = load_target(path, component, adapter)
                handle = self.next_handle
                self.next_handle += 1
                self.objects[handle] = target.fn
                self.targets.add(handle)
                return ("ok", handle)
            if op == "getattr":
                return ("ok", self.encode(getattr(self.objects[request[1]], request[2])))
            if op == "next":  # up to NEXT_BATCH items at once: a stream of many small items in few round trips
                items, iterator = [], self.objects[request[1]]
                for _ in range(NEXT_BATCH):
                    try:
                        items.append(next(iterator))
                    except StopIteration:
                        return ("ok", self.encode(items), True)
                return ("ok", self.encode(items), False)
            if op == "call":
                return self.call(*request[1:])
            if op == "vjp":
                return self.vjp(*request[1:])
            return ("raised", f"unknown request {op!r}")
        except Exception as exc:
            if declines(exc):
                return ("unsupported", f"{type(exc).__name__}: {exc}")
            return ("raised", f"{type(exc).__name__}: {exc}".strip(), traceback.format_exc(limit=-3))

    def call(self, handle: int, attribute: str | None, args: Any, kwargs: Any, seed: int | None) -> tuple:
        fn = self.objects[handle] if attribute is None else getattr(self.objects[handle], attribute)
        return self.run(fn, args, kwargs, seed)

    def vjp(self, handle: int, args: Any, kwargs: Any, wrt: list[int], cotangents: list, twice: bool,
            seed: int | None) -> tuple:
        """The target's outputs and vector-Jacobian products, computed here where its autograd graph lives."""
        target = self.objects[handle]

        def pull_back(*args: Any, **kwargs: Any) -> dict:
            return run_backward(target, args, kwargs, wrt, cotangents, twice)

        return self.run(pull_back, args, kwargs, seed)

    def run(self, fn: Callable, args: Any, kwargs: Any, seed: int | None) -> tuple:
        if seed is not None:  # the first call of an example: what earlier examples left behind is gone
            restore_global_state(self.baseline, seed=seed)
            self.objects = {h: obj for h, obj in self.objects.items() if h in self.targets}
        args, kwargs = self.decode(args), self.decode(kwargs)
        given = list(leaves((args, kwargs)))
        generators = [g for g in given if isinstance(g, torch.Generator)]
        inputs = [t for t in given if isinstance(t, torch.Tensor)]
        snapshots = [t.detach().clone() for t in inputs]
        out = fn(*args, **kwargs)
        # input tensors the call wrote into (the harness compares them with its own), the generators' states
        changed = {i: t.detach() for i, (t, before) in enumerate(zip(inputs, snapshots)) if not same_values(t.detach(), before)}
        storages = {t.untyped_storage().data_ptr(): i for i, t in reversed(list(enumerate(inputs)))
                    if t.layout == torch.strided and t.untyped_storage().nbytes()}
        return ("ok", self.encode(out, storages), changed, [g.get_state() for g in generators])


def _worker_main(conn, output) -> None:
    os.dup2(output.fileno(), 1)  # the target's prints go to the harness's bounded tail, not to its terminal
    os.dup2(output.fileno(), 2)
    output.close()
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    _Worker(conn).serve()


# --- the harness's side ---------------------------------------------------------------------------------------


class WorkerCrashed(Violation):
    def __init__(self, message: str):
        super().__init__(message, cause="crash")


class WorkerTimedOut(Violation):
    def __init__(self, message: str):
        super().__init__(message, cause="timeout")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "died"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class _Tail:
    """Drains a worker's stdout/stderr pipe on a thread, keeping the last bytes (a flood cannot fill memory)."""

    def __init__(self, fd: int):
        self.fd, self.data = fd, b""
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.data = (self.data + chunk)[-OUTPUT_TAIL_BYTES:]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace").strip()

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class _WorkerProcess:
    """One worker process, shared by the targets one harness process checks (each loaded once in it, under its
    own handle). Stopped after a crash or a hang; the next request starts a new one (a new `generation`)."""

    def __init__(self):
        self.process = None
        self.conn = None
        self.tail: _Tail | None = None
        self.generation = 0

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def start(self) -> None:
        self.close()
        ctx = _context()
        parent, child = ctx.Pipe()
        output_reader, output_writer = ctx.Pipe(duplex=False)  # raw bytes: read with os.read, not recv
        self.process = ctx.Process(target=_worker_main, args=(child, output_writer), daemon=True, name="lmspec-worker")
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")  # the worker must not re-run the harness's main script
        try:
            self.process.start()
        finally:
            sys.modules["__main__"] = main
        child.close()
        output_writer.close()
        self.conn, self.tail = parent, _Tail(os.dup(output_reader.fileno()))
        output_reader.close()
        self.generation += 1

    def close(self) -> None:
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(timeout=5)
        if self.conn is not None:
            self.conn.close()
        if self.tail is not None:
            self.tail.close()
        self.process = self.conn = self.tail = None

    def exit_description(self) -> tuple[str, str]:
        """How the worker ended, and the last of what it wrote."""
        self.process.join(timeout=5)
        code = self.process.exitcode
        time.sleep(0.05)  # let the drain thread read what the worker wrote last
        output = self.tail.text() if self.tail else ""
        self.close()
        return _describe_exit(code), output


_SHARED = _WorkerProcess()


class IsolatedTarget:
    """The harness's handle on a target running in the worker process: call it like the target.

    The worker is started lazily, kept warm across examples (and across targets), and restarted after a crash or a
    timeout. `timeout_s` bounds each call (None: the size-based `default_timeout`); once this target has hung,
    each later call gets `after_hang_s` only, so a hanging target costs seconds per invariant, not minutes.
    """

    def __init__(self, path: str, component: str, adapter: str | None = None, timeout_s: float | None = None,
                 after_hang_s: float = 1.0, worker: _WorkerProcess | None = None):
        self.path, self.component, self.adapter = path, component, adapter
        self.name = path
        self.timeout_s, self.after_hang_s = timeout_s, after_hang_s
        self.has_hung = False
        self.worker = worker or _SHARED
        self.handle: int | None = None
        self.generation = -1
        self.callbacks: dict[int, Callable] = {}
        self.pending_seed: int | None = None

    # lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the target in the worker (starting the worker if it is not running)."""
        if not self.worker.alive():
            self.worker.start()
        status, handle, *_ = self._request(("load", self.path, self.component, self.adapter, torch.get_num_threads(),
                                            os.getcwd()), timeout=600.0, loading=True)
        self.handle, self.generation = handle, self.worker.generation

    def _ensure_loaded(self) -> None:
        if not self.worker.alive() or self.generation != self.worker.generation:
            self.start()

    def close(self) -> None:
        """Stop the worker (every target in it reloads on its next call)."""
        self.worker.close()

    def reset(self, seed: int = 0) -> None:
        """Before each example: a worker whose global state and random generators are as at the start (sent with
        the example's first call, saving a round trip)."""
        self.pending_seed = seed

    # calls -----------------------------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._ensure_loaded()
        return self.call(self.handle, None, args, kwargs)

    def call(self, handle: int, attribute: str | None, args: tuple, kwargs: dict) -> Any:
        return self._call(("call", handle, attribute), args, kwargs)

    def vjp(self, args: tuple, kwargs: dict, wrt: list[int], cotangents: list[torch.Tensor], twice: bool = False) -> dict:
        """The target's outputs and vector-Jacobian products (spec/backward.py), computed in the worker."""
        self._ensure_loaded()
        return self._call(("vjp", self.handle), args, kwargs, (list(wrt), [c.detach() for c in cotangents], twice))

    def _call(self, head: tuple, args: tuple, kwargs: dict, extra: tuple = ()) -> Any:
        timeout = self._timeout(args, kwargs)
        self.callbacks = {}
        request = (*head, self._encode(args), self._encode(kwargs), *extra, self.pending_seed)
        self.pending_seed = None
        status, value, changed, generator_states = self._request(request, timeout=timeout)
        given = list(leaves((args, kwargs)))
        inputs = [t for t in given if isinstance(t, torch.Tensor)]
        _check_not_mutated(self.name, inputs, changed)
        for generator, state in zip([g for g in given if isinstance(g, torch.Generator)], generator_states):
            generator.set_state(state)
        return self._wrap(value, inputs)

    def getattr(self, handle: int, name: str) -> Any:
        return self._wrap(self._request(("getattr", handle, name), timeout=self._timeout((), {}))[1])

    def next_items(self, handle: int) -> tuple[list, bool]:
        """The next items of an iterator in the worker, and whether it is exhausted."""
        status, items, exhausted, _ = self._request(("next", handle), timeout=self._timeout((), {}))
        return self._wrap(items), exhausted

    def _timeout(self, args, kwargs) -> float:
        if self.has_hung:
            return self.after_hang_s
        if self.timeout_s is not None:
            return self.timeout_s
        return default_timeout(args, kwargs)

    def _encode(self, value: Any) -> Any:
        if isinstance(value, RemoteObject):
            return Ref(value._handle, value._type_name)
        if _is_plain(value):
            return value
        if type(value) in (list, tuple):
            return type(value)(self._encode(v) for v in value)
        if type(value) is dict:
            return {k: self._encode(v) for k, v in value.items()}
        if callable(value) and type(value).__module__.startswith("lmspec.reference."):
            return value  # a reference model (stateless): by value, so the target calls it without a round trip
        if callable(value):
            callback_id = len(self.callbacks) + 1
            self.callbacks[callback_id] = value
            return Callback(callback_id)
        try:  # other data (an iterator over strings, a dataclass of sizes): by value
            pickle.dumps(value)
            return value
        except Exception:
            raise TypeError(f"cannot pass a {type(value).__name__} to a target in a worker process") from None

    def _wrap(self, value: Any, inputs: list | None = None) -> Any:
        if isinstance(value, Ref):
            return RemoteObject(self, value.handle, value.type_name, value.methods)
        if isinstance(value, AliasOf):
            return torch.empty(0, dtype=value.dtype).set_(inputs[value.index].untyped_storage(), value.offset,
                                                          value.shape, value.stride)
        if type(value) in (list, tuple):
            return type(value)(self._wrap(v, inputs) for v in value)
        if type(value) is dict:
            return {k: self._wrap(v, inputs) for k, v in value.items()}
        return value

    def _request(self, request: tuple, timeout: float, loading: bool = False) -> tuple:
        """Send one request and wait for its answer, serving the worker's callbacks meanwhile."""
        if not self.worker.alive():  # a RemoteObject of a worker that has since been stopped
            self._crashed(loading)
        conn = self.worker.conn
        try:
            _send(conn, request)
        except (BrokenPipeError, OSError):
            self._crashed(loading)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not conn.poll(remaining):
                self.has_hung = True
                self.worker.close()
                raise WorkerTimedOut(f"{self.name} did not return within {timeout:g}s (per-example timeout; the worker "
                                     "was stopped" + (")" if loading else "; later examples get "
                                     f"{self.after_hang_s:g}s each)"))
            try:
                reply = _recv(conn)
            except (EOFError, OSError):
                self._crashed(loading)
            if reply[0] == "callback":
                self._serve_callback(conn, *reply[1:])
                continue
            status = reply[0]
            if status == "unsupported":
                raise TargetUnsupported(reply[1])
            if status == "raised":
                if loading:
                    from .loading import LoadError

                    raise LoadError(reply[1])
                if any(sign in reply[1] for sign in POISONING_ERRORS):
                    self.worker.close()  # a CUDA error can leave the process's context unusable: the next call restarts
                raise Violation(f"{self.name} raised {reply[1]}", cause="raised")
            return tuple(reply) + (None,) * (4 - len(reply))

    def _serve_callback(self, conn, callback_id: int, args: Any, kwargs: Any) -> None:
        try:
            result = self.callbacks[callback_id](*self._wrap(args), **self._wrap(kwargs))
            _send(conn, ("ok", result))
        except Exception as exc:
            _send(conn, ("raised", f"{type(exc).__name__}: {exc}"))

    def _crashed(self, loading: bool) -> None:
        if self.worker.process is None:
            how, output = "had been stopped", ""
        else:
            how, output = self.worker.exit_description()
        tail = f"; its last output: {output[-600:]!r}" if output else ""
        if loading:
            from .loading import LoadError

            raise LoadError(f"{self.name}: the worker {how} while importing the target{tail}")
        raise WorkerCrashed(f"{self.name} crashed: the worker process {how}{tail}")


class RemoteObject:
    """An object the target returned, living in the worker: attribute reads, calls and iteration go there."""

    def __init__(self, owner: IsolatedTarget, handle: int, type_name: str, methods: frozenset = frozenset()):
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_type_name", type_name)
        object.__setattr__(self, "_methods", methods)
        object.__setattr__(self, "_buffer", [])
        object.__setattr__(self, "_exhausted", False)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._methods:  # a method: one round trip when it is called, none now
            return _RemoteMethod(self._owner, self._handle, name)
        return self._owner.getattr(self._handle, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._owner.call(self._handle, None, args, kwargs)

    def __iter__(self):
        return self

    def __next__(self):
        if not self._buffer and not self._exhausted:
            items, exhausted = self._owner.next_items(self._handle)
            self._buffer.extend(items)
            object.__setattr__(self, "_exhausted", exhausted)
        if not self._buffer:
            raise StopIteration
        return self._buffer.pop(0)

    def __repr__(self) -> str:
        return f"<{self._type_name} in {self._owner.name}'s worker>"


@dataclass(frozen=True)
class _RemoteMethod:
    owner: IsolatedTarget
    handle: int
    name: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.owner.call(self.handle, self.name, args, kwargs)


def _check_not_mutated(name: str, tensors_before: list[torch.Tensor], changed: dict) -> None:
    """The input tensors the worker says the call wrote into, against the harness's own: a target must not write
    into its inputs. (The comparison is the harness's; which tensors to compare, the worker's.)"""
    for i, after in sorted(changed.items()):
        if not same_values(tensors_before[i].detach(), after):
            raise Violation(f"{name} mutated its input tensor #{i} (shape {tuple(after.shape)}) in place",
                            cause="mutated_input")


def default_timeout(args: Any, kwargs: Any) -> float:
    """Seconds allowed for one call, from the size of its inputs: 30 s, plus 1 s per million input elements (a
    float64 reference-scale call on the CPU moves well under that)."""
    elements = sum(t.numel() for t in tensors_in((args, kwargs)))
    return 30.0 + elements / 1e6


_TARGETS: dict[tuple, IsolatedTarget] = {}


def worker_for(path: str, component: str, adapter: str | None, timeout_s: float | None) -> IsolatedTarget:
    """This target's handle in the shared worker (loaded there on first use)."""
    key = (path, component, adapter, timeout_s)
    if key not in _TARGETS:
        _TARGETS[key] = IsolatedTarget(path, component, adapter, timeout_s=timeout_s)
    return _TARGETS[key]


def close_workers() -> None:
    _SHARED.close()
    _TARGETS.clear()


atexit.register(close_workers)
