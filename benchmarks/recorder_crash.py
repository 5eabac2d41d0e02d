"""Recording under kill -9: at random moments and inside the commit window, every kill into one store.

Two targets share the store:

* ``recorder``: recorder_node alone, recording the twin (``sim.launch.xml``: MuJoCo, task reach, the
  scripted expert acting, one 64x48 camera @ 15 fps, JPEG) at 10 Hz, driven by this script:
  episodes of 0.3-2.5 s, each saved and the next started at once. Each round SIGKILLs the recorder
  either at a random moment or 0-150 ms after a save was answered (the commit runs then).
* ``launch``: ``teleop.launch.xml`` (MuJoCo twin + scripted expert + recorder, same camera), killed
  either as a whole (SIGKILL to every process of the launch at once, as a power cut would) or by
  SIGKILL to the launch runner alone (its children then get SIGTERM), at a random moment or right
  after the expert's save was answered.

After each kill the store is opened for writing (which recovers it, as the restarted recorder
would) and checked: every episode committed before is byte for byte the same (low-dim data and
frame chunk files), every episode whose save was answered is there with its steps and not marked
recovered, ``verify`` finds no damage, and no process of the killed run is left. The episode in
flight is compared with what it had recorded at the kill.

    .venv/bin/python benchmarks/recorder_crash.py [--kills 100] [--launch-share 0.3] [--seed 0] [--json out.json]
    .venv/bin/python benchmarks/recorder_crash.py --kills 10        # a quick run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from robot_stack.resources import apply_ros_environment, find_config, ros_environment

BIN = Path(sys.executable).parent
RATE = 10.0
ACK = re.compile(r"saved episode (\d+) \((\d+) steps, [0-9.]+ s; durable\)")
COMMIT = re.compile(r"\[recorder\]: saved episode \d+ .*commit (\d+) ms")
STARTED = re.compile(r"\[recorder\]: recording episode (\d+)")


@dataclass
class Book:
    """What the store must hold, and what was measured."""

    store: Path
    fingerprints: dict[int, str] = field(default_factory=dict)
    acks: dict[int, int] = field(default_factory=dict)
    kills: dict[str, int] = field(default_factory=dict)
    committed_lost: list[int] = field(default_factory=list)
    acked_lost: list[int] = field(default_factory=list)
    damaged: int = 0
    orphans: int = 0
    in_flight: list[tuple[str, float, float]] = field(default_factory=list)
    """(target, seconds recorded before the kill, seconds kept in the store)."""
    latencies: list[float] = field(default_factory=list)
    commit_ms: list[float] = field(default_factory=list)

    def check(self, target: str, recording_s: float | None) -> None:
        """After a kill: recover (open for writing), then compare with everything known before."""
        from robot_stack.data.store import EpisodeStore

        before = len(self.fingerprints)
        store = EpisodeStore(self.store, "a")  # recovers the journal like a restarted recorder
        prints = fingerprints(store)
        self.committed_lost += [i for i, h in self.fingerprints.items() if prints.get(i) != h]
        for i, steps in self.acks.items():
            if i >= store.n_episodes or store.episodes[i].length != steps or store.episodes[i].extra.get("recovered"):
                self.acked_lost.append(i)
        kept = [e for e in store.episodes[before:] if e.extra.get("recovered") or e.extra.get("interrupted")]
        if recording_s is not None:
            self.in_flight.append((target, recording_s, sum(e.length for e in kept) / RATE))
        self.damaged += len(store.verify().damaged())
        self.fingerprints = prints
        self.acks = {i: s for i, s in self.acks.items() if i not in self.acked_lost}


def fingerprints(store) -> dict[int, str]:
    """Per committed episode: a hash of its low-dim data and of its frame chunk files."""
    from robot_stack.data.store import chunk_file

    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]]).astype(int)
    lowdim = {k: store.array(k)[: store.n_steps] for k in sorted(store.keys) if not k.endswith("_image")}
    images = [store.array(k) for k in sorted(store.keys) if k.endswith("_image")]
    out = {}
    for i, (a, b) in enumerate(zip(starts, ends)):
        h = hashlib.sha1(str(store.episodes[i].uid).encode())
        for v in lowdim.values():
            h.update(np.ascontiguousarray(v[a:b]).tobytes())
        for arr in images:
            for step in range(a, b):
                h.update(chunk_file(store.path, arr, step).read_bytes())
        out[i] = h.hexdigest()
    return out


def make_profile(folder: Path) -> Path:
    data = yaml.safe_load(find_config("robots", "so101").read_text())
    front = next(c for c in data["cameras"] if c["name"] == "front")
    front.pop("roi", None)  # pixels of the 640x480 frame
    data["cameras"] = [{**front, "width": 64, "height": 48, "fps": 15}]
    data["hardware"].pop("calibration", None)
    path = folder / "so101_small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Lines:
    """A process's output lines with their arrival times, read in a thread."""

    def __init__(self, proc: subprocess.Popen):
        self.items: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.items.append((time.monotonic(), line.rstrip()))

    def text(self) -> str:
        return "\n".join(line for _, line in self.items)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def describe_orphan(pid: int) -> None:
    """Print what an orphan is and where it waits (its Python stacks, where py-spy is installed)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = "?"
    print(f"orphan {pid}: {cmdline}", file=sys.stderr, flush=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if Path(spy).exists():
        subprocess.run([spy, "dump", "--pid", str(pid)], stdout=sys.stderr, stderr=sys.stderr, timeout=30, check=False)


def reap(pids: list[int], book: Book, wait_s: float = 15.0) -> None:
    """Processes of a killed run still alive after ``wait_s`` are orphans: count, then end them."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            book.orphans += 1
            describe_orphan(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Driver:
    """An rclpy node calling the recorder's episode services."""

    def __init__(self) -> None:
        import rclpy
        from std_srvs.srv import Trigger

        rclpy.init()
        self.rclpy, self.node = rclpy, rclpy.create_node("recorder_crash")
        self.clients = {n: self.node.create_client(Trigger, f"episode/{n}") for n in ("start", "save")}
        self.Trigger = Trigger

    def call(self, name: str):  # a future
        return self.clients[name].call_async(self.Trigger.Request())

    def spin_until(self, done, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if done():
                return True
            self.rclpy.spin_once(self.node, timeout_sec=0.005)
        return done()

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def recorder_round(rng: random.Random, driver: Driver, profile: Path, book: Book) -> str:
    proc = subprocess.Popen(
        [str(BIN / "recorder_node"), "--ros-args", "-p", f"robot:={profile}", "-p", f"store:={book.store}",
         "-p", f"record_rate_hz:={RATE}", "-p", "image_codec:=jpeg", "-p", "progress:=false", "-p", "task:=reach"],
        env=ros_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = Lines(proc)
    try:
        deadline = time.monotonic() + 90
        reply = None
        while True:  # episode/start succeeds once the recorder is up and the streams arrive
            future = driver.call("start")
            if driver.spin_until(future.done, time.monotonic() + 10) and (reply := future.result()).success:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                why = reply.message if reply is not None else "no answer to episode/start"
                raise SystemExit(f"recorder did not start ({why}):\n{lines.text()[-3000:]}")
            time.sleep(0.3)
        since: float | None = time.monotonic()  # start of the episode in flight
        commit_window = rng.random() < 0.4
        kill_at = float("inf") if commit_window else time.monotonic() + rng.uniform(0.3, 6.0)
        acks_to_wait = rng.randint(1, 2)
        while time.monotonic() < kill_at:
            if driver.spin_until(lambda: False, min(kill_at, time.monotonic() + rng.uniform(0.3, 2.5))):
                break
            if time.monotonic() >= kill_at:
                break
            called = time.monotonic()
            save, since = driver.call("save"), None
            if not driver.spin_until(save.done, kill_at if not commit_window else called + 30):
                break  # killed while the save was on its way: not acknowledged
            reply = save.result()
            if not reply.success or not (m := ACK.search(reply.message)):
                raise SystemExit(f"save failed: {reply.message}\n{lines.text()[-3000:]}")
            book.latencies.append(time.monotonic() - called)
            book.acks[int(m[1])] = int(m[2])
            if commit_window:
                acks_to_wait -= 1
                if acks_to_wait == 0:  # the commit runs right after the answer
                    kill_at = time.monotonic() + rng.uniform(0.0, 0.15)
                    break
            start = driver.call("start")
            if not driver.spin_until(start.done, kill_at) or not start.result().success:
                break
            since = time.monotonic()
        driver.spin_until(lambda: False, kill_at)
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    proc.wait(timeout=30)
    reap(descendants(proc.pid), book, 2.0)
    book.commit_ms += [float(m[1]) for m in COMMIT.finditer(lines.text())]
    kind = "recorder, commit window" if commit_window else "recorder, random moment"
    book.check("recorder", killed - since if since is not None else None)
    return kind


def launch_round(rng: random.Random, profile: Path, book: Book) -> str:
    proc = subprocess.Popen(
        [str(BIN / "robot-stack"), "launch", "robot_stack", "teleop.launch.xml", "device:=expert", "episodes:=100000",
         f"dataset:={book.store}", f"robot:={profile}", "task:=reach", "cameras:=front", f"record_rate_hz:={RATE}",
         "image_codec:=jpeg", f"seed:={rng.randint(0, 10_000)}"],
        env=ros_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = Lines(proc)
    commit_window, whole = rng.random() < 0.4, rng.random() < 0.5
    try:
        deadline = time.monotonic() + 180
        while not any(STARTED.search(line) for _, line in lines.items):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"launch did not start recording:\n{lines.text()[-3000:]}")
            time.sleep(0.05)
        if commit_window:  # right after the expert's save was answered
            seen = len(lines.items)
            deadline = time.monotonic() + 120
            while not any("recorder: saved episode" in line for _, line in lines.items[seen:]):
                if time.monotonic() > deadline:
                    raise SystemExit(f"no episode was saved:\n{lines.text()[-3000:]}")
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.15))
        else:
            time.sleep(rng.uniform(1.0, 12.0))
        family = [proc.pid, *descendants(proc.pid)]
        for pid in family if whole else [proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed = time.monotonic()
    except BaseException:
        for pid in [proc.pid, *descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise
    proc.wait(timeout=30)
    reap(family, book)
    time.sleep(0.2)
    items = [(t, line) for t, line in lines.items if t <= killed]
    for _, line in items:
        if "recorder: saved episode" in line and (m := ACK.search(line)):
            book.acks[int(m[1])] = int(m[2])
    book.commit_ms += [float(m[1]) for m in COMMIT.finditer("\n".join(line for _, line in items))]
    starts = [(t, line) for t, line in items if STARTED.search(line)]
    last_end = max((t for t, line in items if "recorder: saved episode" in line or "discarded episode" in line),
                   default=-1.0)
    recording = killed - starts[-1][0] if starts and starts[-1][0] > last_end else None
    book.check("launch", recording)
    return f"launch ({'every process' if whole else 'runner only'}), {'commit window' if commit_window else 'random moment'}"


def stop(launch: subprocess.Popen) -> None:
    """Stop a launch like Ctrl-C does; whatever is left after 30 s is killed."""
    family = [launch.pid, *descendants(launch.pid)]
    launch.send_signal(signal.SIGINT)
    try:
        launch.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    for pid in family:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    launch.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100, help="kills in all")
    parser.add_argument("--launch-share", type=float, default=0.3, help="share of the kills that hit the whole launch")
    parser.add_argument("--store", type=Path, help="store to record into (default: a fresh temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    apply_ros_environment()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="recorder_crash_"))
    profile = make_profile(folder)
    book = Book(args.store or folder / "crash.zarr")
    n_launch = int(round(args.kills * args.launch_share))
    plan = ["launch"] * n_launch + ["recorder"] * (args.kills - n_launch)
    rng.shuffle(plan)
    robot = driver = None
    started = time.monotonic()
    try:
        for k, target in enumerate(plan):
            if target == "recorder" and robot is not None and robot.poll() is not None:  # it died: start it again
                robot = None
            if target == "recorder" and robot is None:  # the twin and its expert, without a recorder
                robot = subprocess.Popen(
                    [str(BIN / "robot-stack"), "launch", "robot_stack", "sim.launch.xml", f"robot:={profile}", "task:=reach",
                     "cameras:=front", "expert:=true", "episodes:=0"],
                    env=ros_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                driver = driver or Driver()
            if target == "launch" and robot is not None:  # the launch brings its own twin
                stop(robot)
                robot = None
            kind = recorder_round(rng, driver, profile, book) if target == "recorder" else launch_round(rng, profile, book)
            book.kills[kind] = book.kills.get(kind, 0) + 1
            print(f"kill {k + 1}/{len(plan)}: {kind}; {len(book.fingerprints)} episodes, lost committed "
                  f"{len(book.committed_lost)}, lost acknowledged {len(book.acked_lost)}, damaged {book.damaged}, "
                  f"orphans {book.orphans}", file=sys.stderr, flush=True)
    finally:
        if robot is not None:
            stop(robot)
        if driver is not None:
            driver.close()
    results = summarise(book, time.monotonic() - started)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not args.store:
        shutil.rmtree(folder, ignore_errors=True)


def summarise(book: Book, seconds: float) -> dict:
    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    flights = {t: [(r, k) for target, r, k in book.in_flight if target == t] for t in ("recorder", "launch")}
    return {
        "kills": dict(sorted(book.kills.items())),
        "episodes": len(book.fingerprints),
        "acknowledged": len(book.acks) + len(book.acked_lost),
        "committed_lost": len(book.committed_lost),
        "acknowledged_lost": len(book.acked_lost),
        "damaged_episodes": book.damaged,
        "orphans": book.orphans,
        "in_flight": {
            t: {"kills": len(v), "kept": sum(1 for _, k in v if k > 0),
                "recorded_s_median": pct([r for r, _ in v], 50), "kept_s_median": pct([k for _, k in v], 50),
                "lost_s_median": pct([r - k for r, k in v], 50), "lost_s_max": max((r - k for r, k in v), default=float("nan"))}
            for t, v in flights.items()
        },
        "save_answer_ms": {"n": len(book.latencies), "median": 1000 * pct(book.latencies, 50),
                           "p99": 1000 * pct(book.latencies, 99), "max": 1000 * max(book.latencies, default=float("nan"))},
        "commit_ms_median": pct(book.commit_ms, 50),
        "seconds": seconds,
        "load_average": os.getloadavg()[0],
        "machine": f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})",
    }


def print_table(r: dict) -> None:
    print(f"\nrecorder crash test: {sum(r['kills'].values())} kill -9s into one store ({r['episodes']} episodes at the end, "
          f"{r['acknowledged']} saves answered), {r['seconds']:.0f} s; {r['machine']}, load {r['load_average']:.1f}")
    for kind, n in r["kills"].items():
        print(f"  {n:3d} x {kind}")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| committed episodes lost | {r['committed_lost']} |")
    print(f"| acknowledged episodes lost | {r['acknowledged_lost']} |")
    print(f"| damaged episodes (verify) | {r['damaged_episodes']} |")
    print(f"| orphan processes | {r['orphans']} |")
    for target, f in r["in_flight"].items():
        if f["kills"]:
            print(f"| in-flight episode ({target}): kept / kills | {f['kept']} / {f['kills']} |")
            print(f"| in-flight episode ({target}): seconds recorded / kept / lost (median; max lost) | "
                  f"{f['recorded_s_median']:.2f} / {f['kept_s_median']:.2f} / {f['lost_s_median']:.2f}; {f['lost_s_max']:.2f} |")
    s = r["save_answer_ms"]
    print(f"| save answer latency, ms (median / p99 / max, n={s['n']}) | {s['median']:.0f} / {s['p99']:.0f} / {s['max']:.0f} |")
    print(f"| commit after the answer, ms (median) | {r['commit_ms_median']:.0f} |")


if __name__ == "__main__":
    main()
