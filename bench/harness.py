"""The benchmark orchestrator (``bench/run`` installs the peers, then runs this).

    bench/run [--quick] [--only S1,S2,...] [--reps N] [--docs] [--profile]

This process is the load generator: it pins itself to core 1 and every server to core 0,
raises its file-descriptor limit, runs the scenarios server by server (the order rotates
between repetitions so that drift in the machine's load does not favour one server), and
writes ``results.json`` into ``bench/results/<stamp>-<mode>/``. The report (``report.py``)
then turns that into a ``benchmarks.md`` and plots next to it, or, with ``--docs`` (a run of
every scenario the page shows, S1-S7), into ``docs/benchmarks.md`` and ``docs/bench-*.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import paced  # noqa: E402
import reliability  # noqa: E402
import scenarios  # noqa: E402
import uvloop  # noqa: E402
import workers_bench  # noqa: E402
from lg import profile, servers  # noqa: E402
from scenarios import Config  # noqa: E402

ALL = ("S1", "S2", "S3", "S4", "S5", "S6", "S7")
"""The default run, and the scenarios docs/benchmarks.md shows: --docs needs every one."""
EXTRA = ("S8", "S9", "S10")
"""Run only when named with --only (each takes minutes; not part of the default run)."""
BUILD_TOOLS = ("hatchling", "hatch-mypyc", "mypy", "msgpack-types", "redis", "PyJWT")
"""What ``scripts/compiled`` needs in the project venv (pyproject.toml's mypyc hook: the build
tools, and both extras, which mypy reads); ``scripts/setup test`` installs them."""


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class Refused(Exception):
    """A run that cannot start: one line for the user, no traceback, nothing written."""


def check_request(only: list[str], *, docs: bool, profile_run: bool) -> None:
    """Refuse what would write a misleading docs/benchmarks.md (before anything runs)."""
    if not docs:
        return
    missing = [s for s in ALL if s not in only]
    if missing:
        raise Refused(f"--docs: docs/benchmarks.md shows {', '.join(ALL)}, and this run would not hold "
                      f"{', '.join(missing)}; run them all, or leave --docs out (the report then goes "
                      "next to results.json)")
    if profile_run:
        raise Refused("--docs with --profile: a profiled run (py-spy beside the load generator, Ladder as "
                      "plain Python) is not for docs/benchmarks.md; leave --docs out")


def check_prerequisites(only: list[str], *, profile_run: bool) -> None:
    """What the run needs beyond the peers ``bench/run`` installs, checked before it starts."""
    for package in BUILD_TOOLS:
        if not installed(package):
            raise Refused(f"Ladder's compiled build (scripts/compiled) needs {package} in the project venv: "
                          "run scripts/setup test (scripts/setup demo does not install it)")
    needs_redis = [s for s in ("S7", "S9") if s in only]
    if needs_redis and servers.redis_binary() is None:
        raise Refused(f"{' and '.join(needs_redis)} {'needs' if len(needs_redis) == 1 else 'need'} redis-server "
                      "(the Debian package redis-server; "
                      "scripts/setup test installs it), or leave them out with --only")
    if profile_run and not profile.PY_SPY.exists():
        raise Refused(f"--profile needs py-spy at {profile.PY_SPY}: run bench/run --setup")


def _rotate(items: tuple[Any, ...], k: int) -> list[Any]:
    k %= len(items)
    return list(items[k:] + items[:k])


def _cmd_version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except Exception:
        return "?"


def _pip_versions(python: Path, names: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except Exception: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        result = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, timeout=30, check=False)
        return json.loads(result.stdout)
    except Exception:
        return {}


def _node_versions() -> dict[str, str]:
    out: dict[str, str] = {"node": _cmd_version(["node", "--version"])}
    for name in ("socket.io", "socket.io-client", "engine.io", "ws", "bufferutil", "engine.io-client"):
        with contextlib.suppress(OSError, ValueError):
            out[name] = json.loads((servers.NODE_MODULES / name / "package.json").read_text())["version"]
    return out


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    os_name = "?"
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    commit = _cmd_version(["git", "-C", str(servers.ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _cmd_version(["git", "-C", str(servers.ROOT), "status", "--porcelain", "--", "src"])
    src_changes = [line.strip() for line in dirty.splitlines() if line.strip()]
    stack = ["uvicorn", "uvloop", "httptools", "websockets", "msgpack", "orjson"]
    return {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "bench/run " + " ".join(sys.argv[1:]),
        "mode": "quick" if args.quick else "full",
        "ladder_build": "pure (--profile)" if args.profile else "compiled",
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "memory": mem,
            "os": os_name,
            "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg_before": os.getloadavg(),
        },
        "ladder": {"commit": commit, "src_modified": bool(dirty), "src_changes": src_changes,
                   **_pip_versions(servers.PROJECT_PY, ["ladder-rt", *stack])},
        "psio": _pip_versions(servers.PEERS_PY, ["python-socketio", "python-engineio", *stack, "aiohttp"]),
        "node": _node_versions(),
        "redis": {"redis-server": servers.redis_version(),
                  **_pip_versions(servers.PROJECT_PY, ["redis"])},
    }


def _log_traceback(path: Path) -> None:
    """Append the exception being handled to ``path`` (a short write, once per failed run)."""
    with contextlib.suppress(OSError), open(path, "a") as log:
        traceback.print_exc(file=log)


async def run(cfg: Config, only: list[str], results: dict[str, Any], save: Any) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, _ctx: None)  # aborted sockets: expected noise

    async def guarded(name: str, coro: Any, timeout: float) -> Any:
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                return await coro
        except Exception as exc:
            print(f"    ! {name} failed: {exc!r}", flush=True)
            _log_traceback(cfg.logdir / "errors.log")
            results.setdefault("errors", []).append({"what": name, "error": repr(exc)})
            return None
        finally:
            servers.stop_all()
            gc.collect()
            print(f"    {name}: {time.monotonic() - t0:.1f} s", flush=True)

    def add(key: str, value: Any) -> None:
        if value is None:
            return
        bucket = results["scenarios"].setdefault(key, [])
        bucket.extend(value if isinstance(value, list) else [value])
        save()

    # Built (or found up to date) before any timed scenario: a first build takes minutes,
    # which counted against the first scenario's time limit and failed it (main() built it
    # already; this finds it up to date).
    await loop.run_in_executor(None, servers.compiled)
    asgi = servers.asgi_variant()
    results["meta"]["ladder_ws_drivers"] = ["native", "asgi"] if asgi else ["asgi"]
    if "S1" in only:
        print("S1 idle footprint", flush=True)
        configs = [c for c in scenarios.S1_CONFIGS if c[0] in servers.SERVERS and c[1] in cfg.s1_transports]
        if asgi and "ladder" in servers.SERVERS:
            configs.insert(1, ("ladder-asgi", "websocket"))
        for rep in range(1):  # memory is steady from run to run; one pass keeps the run short
            for kind, transport in configs:
                rec = await guarded(f"S1 {kind}/{transport}", scenarios.s1(cfg, kind, transport), 300)
                if rec is not None:
                    rec["rep"] = rep
                add("S1", rec)
    if "S2" in only:
        print("S2 fan-out", flush=True)
        for rep in range(cfg.reps):
            for kind in _rotate(servers.SERVERS, rep):
                recs = await guarded(f"S2 {kind} rep {rep}", scenarios.s2(cfg, kind), 300)
                add("S2", [dict(r, rep=rep) for r in recs or []])
        if not cfg.quick:
            # Ladder's other encoding (what a browser would use): JSON text frames.
            for rep in range(1):
                recs = await guarded(f"S2 ladder/json rep {rep}", scenarios.s2(cfg, "ladder", "json"), 300)
                add("S2", [dict(r, rep=rep) for r in recs or []])
            # The WebSocket through ASGI, when ladder serve also has a native driver.
            if asgi:
                recs = await guarded("S2 ladder-asgi rep 0", scenarios.s2(cfg, "ladder-asgi"), 300)
                add("S2", [dict(r, rep=0) for r in recs or []])
    if "S3" in only:
        print("S3 chat rooms", flush=True)
        for rep in range(max(1, cfg.reps - 1)):
            for kind in _rotate(servers.SERVERS, rep):
                recs = await guarded(f"S3 {kind} rep {rep}", scenarios.s3(cfg, kind), 300)
                add("S3", [dict(r, rep=rep) for r in recs or []])
    if "S4" in only:
        print("S4 RPC", flush=True)
        for rep in range(cfg.reps):
            for kind in _rotate(servers.SERVERS, rep):
                recs = await guarded(f"S4 {kind} rep {rep}", scenarios.s4(cfg, kind), 200)
                add("S4", [dict(r, rep=rep) for r in recs or []])
    if "S5" in only:
        print("S5 per-rung latency", flush=True)
        for rep in range(max(1, cfg.reps - 1)):
            configs = list(scenarios.S5_CONFIGS)
            if rep % 2:
                configs.reverse()
            for kind, transport in configs:
                rec = await guarded(f"S5 {kind}/{transport} rep {rep}", scenarios.s5(cfg, kind, transport), 200)
                if rec is not None:
                    rec["rep"] = rep
                add("S5", rec)
    if "S6" in only:
        print("S6 time to first message", flush=True)
        add("S6", await guarded("S6", scenarios.s6(cfg), 900))
    if "S7" in only:
        print("S7 across nodes", flush=True)
        for rep in range(max(1, cfg.reps - 1)):
            for engine, nodes in _rotate(scenarios.S7_CONFIGS, rep):
                recs = await guarded(f"S7 {engine} x{nodes} rep {rep}", scenarios.s7(cfg, engine, nodes), 300)
                add("S7", [dict(r, rep=rep) for r in recs or []])
    if "S8" in only:
        print(f"S8 delivery under churn ({cfg.s8_clients} clients, {cfg.s8_seconds:g} s each)", flush=True)
        for kind, transport in reliability.CONFIGS:
            rec = await guarded(f"S8 {kind}/{transport}", reliability.s8(cfg, kind, transport),
                                cfg.s8_seconds + 180)
            if rec is not None:
                print("      " + reliability.summary(rec), flush=True)
            add("S8", rec)
    if "S9" in only:
        print("S9 ladder serve --workers", flush=True)
        for rep in range(cfg.reps):
            for workers, engine, publishers, who in _rotate(cfg.s9_configs or workers_bench.CONFIGS, rep):
                rec = await guarded(f"S9 workers={workers} {engine} publishers={publishers} by {who} rep {rep}",
                                    workers_bench.s9(cfg, workers, engine, publishers, who), 300)
                if rec is not None:
                    rec["rep"] = rep
                    print("      " + workers_bench.summary(rec), flush=True)
                add("S9", rec)
    if "S10" in only:
        print("S10 paced fan-out (20 publications/s) and RPC", flush=True)
        for rep in range(cfg.reps):
            for kind, encoding in _rotate(tuple(paced.configs(servers.SERVERS)), rep):
                rec = await guarded(f"S10 {kind}/{encoding} rep {rep}", paced.s10(cfg, kind, encoding),
                                    90 + cfg.s10_seconds)
                if rec is not None:
                    rec["rep"] = rep
                    print("      " + paced.summary(rec), flush=True)
                add("S10", rec)
        print(paced.table(results["scenarios"].get("S10", [])), flush=True)


def render(results_path: Path, *, docs: bool) -> int:
    """The report and plots (matplotlib lives in the peers' venv, so it runs there): next to
    the results, or with ``docs`` into docs/ (report.py refuses results that lack a scenario
    the page shows). Returns report.py's exit status."""
    cmd = [str(servers.PEERS_PY), str(BENCH / "report.py"), str(results_path)] + (["--docs"] if docs else [])
    return subprocess.run(cmd, check=False).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter windows (< 3 min)")
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated scenarios (default: S1-S7; S8, S9 and S10 run only when named)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: full 3, quick 1)")
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument("--docs", dest="docs", action="store_true", default=False,
                      help="write docs/benchmarks.md and docs/bench-*.png instead of a report next to "
                           "results.json; refused unless the run holds every scenario the page shows (S1-S7)")
    docs.add_argument("--no-docs", dest="docs", action="store_false",
                      help="the report next to results.json (the default)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the Ladder server with py-spy in every measurement window "
                             "(results/<run>/profiles/); Ladder then runs as plain Python (py-spy sees "
                             "no Python frames inside the compiled build); not for the report")
    parser.add_argument("--s8-clients", type=int, default=None, help="S8: clients per configuration")
    parser.add_argument("--s1-sizes", default=None,
                        help="S1: connection counts, comma-separated (default 1000,5000,10000; "
                             "the process's descriptor limit bounds the largest)")
    parser.add_argument("--s1-heartbeat", type=float, default=None,
                        help="S1: heartbeat seconds on every server (default 5; 0: each server's own default)")
    parser.add_argument("--s1-transports", default=None,
                        help="S1: transports, comma-separated (default websocket,sse,longpoll; an SSE or "
                             "polling client holds two descriptors in the load generator)")
    parser.add_argument("--s1-subscribe", action="store_true",
                        help="S1: each client subscribed to a channel (room) of its own")
    parser.add_argument("--s1-idle", type=float, default=None, help="S1: seconds of the idle window (default 15)")
    parser.add_argument("--s10-window", type=float, default=None,
                        help="S10: seconds of the fan-out window (default 24, after 22 s of warm-up: it holds "
                             "one or two of each subscriber's acks, which come every 13-26 s at 20 "
                             "publications/s, or with the pong after 20 s unheard)")
    parser.add_argument("--s10-rpc-window", type=float, default=None,
                        help="S10: seconds of the RPC window (default 2; longer to judge a small change)")
    parser.add_argument("--s8-seconds", type=float, default=None, help="S8: seconds of churn per configuration")
    parser.add_argument("--s9-configs", default=None,
                        help="S9: only these configurations, comma-separated WORKERS:ENGINE:PUBLISHERS:WHO "
                             "(e.g. 1:memory:1:handler,1:redis:1:handler; default: all eight)")
    parser.add_argument("--report-only", metavar="RESULTS_JSON", help="re-render the report from a results file")
    args = parser.parse_args()

    if args.report_only:
        sys.exit(render(Path(args.report_only), docs=args.docs))

    only = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in ALL + EXTRA]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {ALL + EXTRA}")
    write_docs = bool(args.docs)
    try:
        check_request(only, docs=write_docs, profile_run=args.profile)
        check_prerequisites(only, profile_run=args.profile)
        # Built (or found up to date) before any results directory exists: a first build
        # takes minutes, and a failed one must not leave a run behind.
        try:
            servers.compiled()
        except subprocess.CalledProcessError as exc:
            raise Refused("scripts/compiled could not build Ladder's compiled build (its output is above)") from exc
    except Refused as exc:
        print(f"bench/run: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    if args.profile:
        servers.profile_pure()
        print("--profile: Ladder runs as plain Python (the ladder-pure build), which py-spy can sample; "
              "the compiled build shows only Runner.run", flush=True)

    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {servers.LOAD_CORE})
    # 10k connections: the servers need ~10k descriptors, the load generator up to ~20k (an
    # SSE or polling client has a second connection for its POSTs). Root may raise the hard
    # limit; the servers inherit it.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit < 10500:
        print(f"note: file-descriptor limit is {limit}; 10k connections need about 10.1k per process")

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = BENCH / "results" / f"{stamp}-{'quick' if args.quick else 'full'}"
    outdir.mkdir(parents=True, exist_ok=True)
    cfg = Config.make(args.quick, args.reps, outdir / "logs")
    cfg.logdir.mkdir(parents=True, exist_ok=True)
    if args.s8_clients:
        cfg.s8_clients = args.s8_clients
    if args.s8_seconds:
        cfg.s8_seconds = args.s8_seconds
    if args.s10_window:
        cfg.s10_window = args.s10_window
    if args.s9_configs:
        try:
            cfg.s9_configs = workers_bench.parse_configs(args.s9_configs)
        except ValueError as exc:
            parser.error(f"--s9-configs: {exc}")
    if args.s10_rpc_window:
        cfg.s10_rpc_window = args.s10_rpc_window
    if args.s1_sizes:
        cfg.s1_sizes = tuple(int(n) for n in args.s1_sizes.split(","))
        if max(cfg.s1_sizes) > limit - 500:
            parser.error(f"--s1-sizes: {max(cfg.s1_sizes):,} connections need more than the "
                         f"descriptor limit ({limit:,}) leaves; at most {limit - 500:,}")
    if args.s1_transports:
        cfg.s1_transports = tuple(t.strip() for t in args.s1_transports.split(","))
    cfg.s1_subscribe = args.s1_subscribe
    if args.s1_heartbeat is not None:
        cfg.s1_heartbeat = args.s1_heartbeat or None
    if args.s1_idle is not None:
        cfg.s1_idle = args.s1_idle
    if args.profile:
        profile.enable(outdir / "profiles")

    def bye(signum: int, _frame: Any) -> None:
        servers.stop_all()
        print(f"\ninterrupted (signal {signum}); servers stopped", flush=True)
        os._exit(130)

    signal.signal(signal.SIGINT, bye)
    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGHUP, bye)

    results: dict[str, Any] = {"meta": metadata(args), "config": {
        k: v for k, v in vars(cfg).items() if k not in ("logdir", "extra")}, "scenarios": {}}
    results_path = outdir / "results.json"

    def save() -> None:
        results_path.write_text(json.dumps(results, indent=1, default=str))

    save()
    t0 = time.monotonic()
    print(f"results: {results_path}", flush=True)
    gc.disable()  # the load generator's latency must not include collector pauses
    try:
        uvloop.run(run(cfg, only, results, save))
    finally:
        servers.stop_all()
        gc.enable()
    results["meta"]["seconds"] = round(time.monotonic() - t0, 1)
    from lg.measure import RETRIES  # noqa: PLC0415

    results["meta"]["connect_retries"] = RETRIES[0]
    results["meta"]["machine"]["loadavg_after"] = os.getloadavg()
    save()
    if render(results_path, docs=write_docs) == 2 and write_docs:
        print("docs/benchmarks.md left as it was; the report goes next to the results", flush=True)
        render(results_path, docs=False)
    print(f"done in {results['meta']['seconds']:.0f} s; results in {outdir}", flush=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        servers.stop_all()
