"""The Ray engine of a corpus run (``mambaner tag … -o DIR/ --engine ray``): the same unit of work as the
local engine, :func:`~mambaner_cli.runtime.corpus.tag_input`, on the actors of a Ray cluster.

A thin adapter over Ray Data: a dataset of :class:`~mambaner_cli.runtime.corpus.InputTask` rows (one whole
input file per row, pickled), ``map_batches`` over a pool of actors (:class:`_InputTagger`) that each load
the model once in ``__init__`` and tag one input per call, and the results streamed back to the driver as
they finish, so that the driver (alone, as with the local engine) appends each record to the manifest.
One input per row rather than one document per row: outputs are written atomically per input, and the
manifest's records and the resume rule are per input, so the input file is the unit of work that keeps
every one of those promises with no merging step; streaming documents as rows was not measured.

Ray is optional (``pip install 'mambaner[ray]'``) and imported only here, inside functions. Local paths
must name the same files on every node (one machine, or a shared file system), and the actors work in the
driver's working directory so that relative paths name the same files; inputs and outputs on an object
store (``s3://``…) are read and written by the actors themselves (:mod:`.object_store`), so the nodes
need only reach the store.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mambaner_cli.errors import MambanerUsageError

if TYPE_CHECKING:
    from mambaner_cli.runtime.corpus import InputTask, TaggedInput
    from mambaner_cli.runtime.run import TagObserver, TagOptions

#: How often an input whose actor died while tagging it is tried again before it is recorded as failed.
RETRIES = 3
#: What `--engine ray` tells a user without Ray.
RAY_MISSING = "--engine ray needs Ray, which is not installed. To fix: pip install 'mambaner[ray]'"


def check_ray() -> None:
    """Refuse (a usage error, before anything is read) an engine that cannot start: Ray not installed."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise MambanerUsageError(RAY_MISSING)


class _Attempts:
    """A Ray actor on the driver's node that counts, per input, the calls that started tagging it.

    Ray Data restarts a dead actor and retries its task for ever (its defaults, which the supported API of
    Ray 2.60 no longer lets a caller bound: ``max_restarts``/``max_task_retries`` in ``map_batches`` are
    deprecated, to go in Ray 2.64). An input that kills its actor each time (out of memory) would loop
    for ever; counted here, across restarts, it is given up after RETRIES retries."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def next(self, key: str) -> int:
        self._counts[key] = self._counts.get(key, 0) + 1
        return self._counts[key]


class _InputTagger:
    """A Ray Data actor: loads the model once, then tags one input file per row of each batch it gets.

    Rows and results are pickled :class:`InputTask` / :class:`TaggedInput` bytes: Ray Data's columns are
    Arrow or NumPy, and a pickled dataclass crosses them unchanged (with its ReadError objects, which the
    driver hands to the observer as the local engine does)."""

    def __init__(self, options: TagOptions, threads: int, settings: dict[str, Any], cwd: str,
                 attempts: Any) -> None:
        import dataclasses

        from mambaner_cli.runtime.run import _load_tagger

        if os.path.isdir(cwd):  # relative input and model paths mean what they meant to the driver
            os.chdir(cwd)
        self._tagger = _load_tagger(dataclasses.replace(options, threads=threads))
        self._settings = settings
        self._attempts = attempts

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[bytes]]:
        return {"done": [pickle.dumps(self._tag(pickle.loads(task))) for task in batch["task"]]}

    def _tag(self, task: InputTask) -> TaggedInput:
        import ray

        from mambaner_cli.runtime.corpus import gave_up, tag_input

        attempt = ray.get(self._attempts.next.remote(task.input))
        if attempt > RETRIES + 1:
            return gave_up(task, self._settings, f"not tagged: the process tagging it died {attempt - 1} times "
                                                 "(out of memory, or its node lost); a rerun tries it again")
        return tag_input(task, self._tagger, self._settings)


def tag_with_ray(tasks: Sequence[InputTask], settings: dict[str, Any], options: TagOptions,
                 observer: TagObserver) -> Iterator[tuple[str, TaggedInput]]:
    """Tag ``tasks`` on Ray and yield ``(input as given, result)`` as each input finishes, in any order.

    ``options.ray_address`` None starts an embedded local Ray with this machine's resources and shuts it
    down at the end; an address (``auto``, ``ray://host:10001``) joins a running cluster and only
    disconnects from it. A Ray already initialised by the caller (a test, a notebook) is used and left up.

    Each actor takes ``options.threads`` CPUs (1 when not given) and one GPU when the cluster has GPUs and
    ``--device`` is not ``cpu``; there are ``options.workers`` actors when more than one is asked, else as
    many as the cluster's CPUs (or GPUs) allow, never more than there are inputs. An actor that dies (its
    node lost, killed for memory) is restarted and its input retried, by Ray Data's own defaults; an input
    tried RETRIES + 1 times is recorded as failed (see :class:`_Attempts`) and the run goes on. An
    exception raised by tagging itself is not retried: read errors are already recorded as the input's
    errors, and anything else is a bug that a retry would repeat.
    """
    if not tasks:
        return
    check_ray()
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    try:
        yield from _run(ray, tasks, settings, options, observer)
    finally:
        if started_here:  # embedded: stops the local cluster; joined: disconnects, the cluster stays
            ray.shutdown()


def _run(ray: Any, tasks: Sequence[InputTask], settings: dict[str, Any], options: TagOptions,
         observer: TagObserver) -> Iterator[tuple[str, TaggedInput]]:
    from ray.data import ActorPoolStrategy, DataContext

    from mambaner_cli.runtime.corpus import report_finished_inputs

    resources = ray.cluster_resources()
    threads = options.threads or 1
    gpus = int(resources.get("GPU", 0)) if options.device != "cpu" else 0
    if options.workers > 1:
        actors = options.workers
    elif gpus:
        actors = gpus
    else:
        actors = max(1, int(resources.get("CPU", 1)) // threads)
    actors = min(actors, len(tasks))

    context = DataContext.get_current()
    context.enable_progress_bars = False  # the observer draws progress; Ray's bars would interleave with it
    context.print_on_execution_start = False
    context.actor_task_retry_on_errors = False  # retry system failures only: a tagging exception would recur
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its INFO and WARNING lines are Ray's, not the run's
    dataset = ray.data.from_items([{"task": pickle.dumps(task)} for task in tasks],
                                  override_num_blocks=len(tasks))
    # retries: Ray Data restarts dead actors and retries their tasks by default; only the bound is ours
    attempts = _attempts_actor(ray)
    done = dataset.map_batches(
        _InputTagger, batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=actors),
        fn_constructor_args=(options, threads, settings, os.getcwd(), attempts), num_cpus=threads,
        num_gpus=1 if gpus else None)
    results: Iterator[TaggedInput] = (pickle.loads(row["done"]) for row in done.iter_rows())
    try:
        yield from report_finished_inputs(results, tasks, observer)
    finally:
        ray.kill(attempts)


def _attempts_actor(ray: Any) -> Any:
    """The run's :class:`_Attempts`, on the driver's node (the node a run cannot lose and go on), taking
    no CPU; Ray restarts it if it dies all the same (counts lost: a few more retries, never a lost input)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, scheduling_strategy=here)(
        _Attempts).remote()
