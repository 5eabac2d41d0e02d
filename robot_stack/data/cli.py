"""``robot-stack data``: inspect, check, edit and export episode stores (info, verify, video, plot, drop, merge, export, import)."""

from __future__ import annotations

import argparse
from pathlib import Path

from robot_stack.cli import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "data",
        "inspect and edit recorded episode stores",
        "Episode stores are zarr 3 folders in the diffusion_policy layout (data/<key>, meta/episode_ends)\n"
        "written by recorder_node. Examples:\n"
        "  robot-stack data info data/pick.zarr --episodes\n"
        "  robot-stack data verify data/pick.zarr\n"
        "  robot-stack data video data/pick.zarr 3 -o ep3.mp4\n"
        "  robot-stack data plot data/pick.zarr -1 -o last.png\n"
        "  robot-stack data drop data/pick.zarr 2 5-7\n"
        "  robot-stack data merge all.zarr monday.zarr tuesday.zarr\n"
        "  robot-stack data replay data/pick.zarr --episode 3 --compare\n"
        "  robot-stack data export data/pick.zarr --mcap bags/\n"
        "  robot-stack data import pusht_cchi_v7_replay.zarr pusht.zarr\n"
        "  robot-stack data import bags/ pick.zarr --format rosbag2",
    )
    sub = p.add_subparsers(dest="data_command", metavar="<action>")
    p.set_defaults(handler=lambda args: p.print_help() or 2)

    info = add_command(sub, "info", "episodes, steps, rate, keys, shapes and sizes of a store; flags damaged episodes")
    info.add_argument("store", type=Path, help="episode store folder")
    info.add_argument("--episodes", action="store_true", help="also list every episode")
    info.add_argument("--no-verify", action="store_true", help="skip the checksum pass (reads every chunk once)")
    info.set_defaults(handler=_info)

    verify = add_command(
        sub, "verify", "check every chunk's checksum and the episode index; name each damaged episode and key",
        "Reads every chunk of every array once and checks its crc32c checksum, that no chunk is missing, that\n"
        "each array is as long as the commit record and that meta/episode_ends agrees with it. Prints the\n"
        "damaged episodes and what is damaged in each; exit status 1 if any. Damaged episodes are refused by\n"
        "training and export (--skip-damaged uses the rest); 'data drop' removes them.\n"
        "--repair opens the store for writing first: it recovers an interrupted recording from its journal,\n"
        "cuts uncommitted data and rewrites meta/episode_ends from the commit record (damaged chunks cannot be\n"
        "repaired: drop those episodes).\n"
        "Examples:\n"
        "  robot-stack data verify data/pick.zarr\n"
        "  robot-stack data verify data/pick.zarr --repair",
    )
    verify.add_argument("store", type=Path, help="episode store folder")
    verify.add_argument("--repair", action="store_true", help="open for writing first (journal recovery, index rewrite)")
    verify.set_defaults(handler=_verify)

    video = add_command(sub, "video", "write an MP4 of one episode's cameras (side by side)")
    video.add_argument("store", type=Path, help="episode store folder")
    video.add_argument("episode", type=int, help="episode index (negative counts from the end)")
    video.add_argument("-o", "--output", type=Path, help="output .mp4 (default: <store>_ep<N>.mp4)")
    video.add_argument("--fps", type=float, help="frame rate (default: the recorded rate)")
    video.set_defaults(handler=_video)

    plot = add_command(sub, "plot", "plot one episode's joint positions and actions to a PNG")
    plot.add_argument("store", type=Path, help="episode store folder")
    plot.add_argument("episode", type=int, help="episode index (negative counts from the end)")
    plot.add_argument("-o", "--output", type=Path, help="output .png (default: <store>_ep<N>.png)")
    plot.set_defaults(handler=_plot)

    drop = add_command(sub, "drop", "remove episodes from a store (rewrites it, then swaps atomically)")
    drop.add_argument("store", type=Path, help="episode store folder")
    drop.add_argument("episodes", nargs="+", help="episode indices or ranges: 3 5-7 -1")
    drop.set_defaults(handler=_drop)

    merge = add_command(sub, "merge", "append the episodes of stores to another (created if missing)")
    merge.add_argument("output", type=Path, help="store to append to")
    merge.add_argument("inputs", type=Path, nargs="+", help="stores to copy episodes from (keys must match)")
    merge.set_defaults(handler=_merge)

    export = add_command(
        sub, "export", "export episodes: rosbag2 (MCAP) folders, a LeRobotDataset v3.0 or a zarr 2 replay buffer",
        "Formats:\n"
        "  mcap     one rosbag2 folder (MCAP storage) per episode, on the contract's topics (ros2 bag, Foxglove,\n"
        "           rosbags)\n"
        "  zarr2    a zarr format 2 ReplayBuffer (data/<key>, meta/episode_ends) that diffusion_policy's\n"
        "           ReplayBuffer.copy_from_path opens unchanged (zarr 2.12); images keep the store's codec, byte\n"
        "           for byte: JPEG as imagecodecs_jpeg (diffusion_policy registers it: register_codecs()), or blosc\n"
        "  lerobot  a LeRobotDataset v3.0 folder: parquet frames, one MP4 per episode and camera (AV1 by\n"
        "           default), meta/info.json, stats.json, tasks.parquet, episodes/ -- load it with\n"
        "           LeRobotDataset('<any>/<name>', root=OUT)\n"
        "Examples:\n"
        "  robot-stack data export data/pick.zarr bags/ --format mcap      (or: --mcap bags/)\n"
        "  robot-stack data export data/pick.zarr pick_dp.zarr --format zarr2\n"
        "  robot-stack data export data/pick.zarr lerobot/pick --format lerobot --episodes 0-9",
    )
    export.add_argument("store", type=Path, help="episode store folder")
    export.add_argument("output", type=Path, nargs="?", help="output folder (new or empty)")
    export.add_argument("--format", choices=("mcap", "lerobot", "zarr2"), default="mcap", help="output format")
    export.add_argument("--mcap", type=Path, metavar="FOLDER", help="same as: FOLDER --format mcap")
    export.add_argument("--episodes", nargs="+", default=None, help="episode indices or ranges, e.g. 0 3-5 -1 (all when omitted)")
    export.add_argument("--fps", type=float, help="lerobot: frame rate (default: the recorded rate; must be whole)")
    export.add_argument("--task", help="lerobot: task text for every episode (default: each episode's task)")
    export.add_argument("--video-codec", choices=("av1", "h264"), default="av1", help="lerobot: video codec")
    export.add_argument("--skip-damaged", action="store_true", help="export the undamaged episodes of a damaged store")
    export.set_defaults(handler=_export)

    rep = add_command(
        sub, "replay", "play an episode back: in the twin (commands, tracking error) and/or as ROS topics",
        "Play one recorded episode back.\n"
        "  in the twin (default, in-process): the recorded actions drive the MuJoCo twin from the recorded\n"
        "    initial state (arm and objects) at the control rate; prints the twin's tracking error;\n"
        "  --compare: also searches the command shift (up to 1.5 recording periods) that fits best, prints a\n"
        "    per-joint table (RMS / max, rad and deg) and writes a PNG of recorded vs twin joint curves:\n"
        "    the sim-to-real gap of a hardware episode in numbers;\n"
        "  --ros: publishes the episode on the robot contract (joint_states, ee_pose, images, commands...)\n"
        "    with its original relative timing (--speed scales it), for recorders and other nodes.\n"
        "Examples:\n"
        "  robot-stack data replay data/pick.zarr --episode 3 --compare -o gap.png\n"
        "  robot-stack data replay data/pick.zarr --episode -1 --video twin.mp4 --cameras front\n"
        "  robot-stack data replay data/pick.zarr --episode 0 --ros --speed 0.5",
    )
    rep.add_argument("store", type=Path, help="episode store folder")
    rep.add_argument("--episode", type=int, default=0, help="episode index (negative counts from the end)")
    rep.add_argument("--twin", action="store_true", help="replay in the twin (the default unless --ros is given alone)")
    rep.add_argument("--compare", action="store_true", help="twin replay + best command shift + per-joint table + PNG")
    rep.add_argument("-o", "--output", type=Path, help="--compare PNG (default: <store>_ep<N>_compare.png)")
    rep.add_argument("--interpolation", choices=("step", "linear"), default="step",
                     help="how the twin executes the actions: step = held until the next (forward commands), "
                          "linear = ramp to each over a period (joint_trajectory / TwinEnv.step)")
    rep.add_argument("--video", type=Path, help="twin replay: MP4 of the recorded frames above the twin's renders")
    rep.add_argument("--cameras", help="--video: comma list of profile cameras (default: the recorded ones)")
    rep.add_argument("--ros", action="store_true", help="publish the episode on the robot contract")
    rep.add_argument("--speed", type=float, default=1.0, help="--ros: playback speed (2 = twice as fast)")
    rep.add_argument("--wait", type=float, default=2.0, help="--ros: wait up to this long for a joint_states subscriber, s")
    rep.add_argument("--force", action="store_true", help="--ros: publish even if something else publishes joint_states")
    rep.set_defaults(handler=_replay)

    imp = add_command(
        sub, "import", "append episodes from rosbag2 folders or a diffusion_policy replay-buffer zarr",
        "Append episodes to a store (created if missing). Sources:\n"
        "  rosbag2 folders (MCAP or sqlite3), one episode per bag, or a folder of bags: the contract's topics\n"
        "    are resampled onto a fixed grid exactly as recorder_node samples live topics (nearest earlier\n"
        "    capture stamp per stream, commands by arrival = log time, tick assembled latency after it);\n"
        "  a diffusion_policy ReplayBuffer zarr (format 2 or 3; data/<key> + meta/episode_ends).\n"
        "Examples:\n"
        "  robot-stack data import bags/ pick.zarr --format rosbag2\n"
        "  robot-stack data import run1_bag run2_bag pick.zarr --robot so101 --rate 10 --task pick_cube\n"
        "  robot-stack data import pusht_cchi_v7_replay.zarr pusht.zarr\n"
        "  robot-stack data import bags/ pick.zarr --format rosbag2",
    )
    imp.add_argument("sources", type=Path, nargs="+", help="rosbag2 folder(s), a folder of bags, or one replay-buffer zarr")
    imp.add_argument("output", type=Path, help="episode store to append to (created if missing)")
    imp.add_argument("--format", choices=("auto", "rosbag2", "zarr"), default="auto",
                     help="source format (auto: a folder with metadata.yaml or bag subfolders is rosbag2)")
    bag = imp.add_argument_group("rosbag2 options")
    bag.add_argument("--robot", help="robot profile name or YAML (default: the one the bag stores, from export --mcap)")
    bag.add_argument("--rate", type=float, help="sampling rate, Hz (default: the bag's recorded rate, else the policy rate)")
    bag.add_argument("--latency", type=float, default=0.1, help="assemble a tick this long (log time) after it, s")
    bag.add_argument("--tolerance", type=float, default=0.0, help="max sample age before it counts as late, s (0: 1.5 periods)")
    bag.add_argument("--cameras", help="comma list of cameras (default: every profile camera with images in the bag)")
    bag.add_argument("--task", help="task stored with the episodes (default: the bag's; a task name also enables object_state)")
    bag.add_argument("--image-codec", choices=("blosc", "jpeg"), default="blosc", help="image codec of a new store")
    imp.set_defaults(handler=_import)


def _open(path: Path):
    from robot_stack.data.store import EpisodeStore

    return EpisodeStore(path)


def _index(store, episode: int) -> int:
    store.episode_slice(episode)  # validates (one-line error)
    return episode % store.n_episodes


def _default_output(store: Path, episode: int, suffix: str) -> Path:
    return store.with_name(f"{store.name.removesuffix('.zarr')}_ep{episode}{suffix}")


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from robot_stack.data.integrity import plural, ranges
    from robot_stack.data.ops import summary

    store = _open(args.store)
    report = None if args.no_verify else store.verify(progress=True)
    damaged = report.damaged() if report is not None else {}
    s = summary(store, damaged)
    console = Console(soft_wrap=True)
    console.print(
        f"[bold]{s['path']}[/]: {s['episodes']} episodes, {s['steps']} steps, {s['fps']:.1f} Hz, "
        f"{s['duration_s']:.1f} s, {s['success']} successful, {s['bytes'] / 1e6:.1f} MB on disk; "
        f"late frames {s['late_frames']}, missing frames {s['missing_frames']}"
    )
    flagged = {"recovered": [], "interrupted": []}
    for i, e in enumerate(store.episodes):
        for flag in flagged:
            if e.extra.get(flag):
                flagged[flag].append(i)
    if flagged["recovered"]:
        console.print(f"recovered from the journal of a crashed recording (partial, success unknown): episodes "
                      f"{ranges(flagged['recovered'])}")
    if flagged["interrupted"]:
        console.print(f"interrupted (the recorder stopped while recording): episodes {ranges(flagged['interrupted'])}")
    if store.pending_journals():
        console.print(f"an interrupted recording waits in the journal: it becomes an episode (marked recovered) when the "
                      f"store is next opened for writing, e.g. 'robot-stack data verify {args.store} --repair'")
    if report is None:
        console.print("integrity: not checked (--no-verify)")
    elif damaged:
        console.print(f"[bold red]DAMAGED[/]: {plural(len(damaged), 'episode')} ({ranges(damaged)}); "
                      f"'robot-stack data verify {args.store}' names each")
        for line in report.summary():
            console.print(f"  {line}")
    else:
        console.print(f"integrity: ok ({report.chunks} chunks checked)")
    for note in report.notes if report is not None else ():
        console.print(f"note: {note}")
    table = Table("key", "shape", "dtype", "MB")
    for key, k in s["keys"].items():
        table.add_row(key, str(k["shape"]), k["dtype"], f"{k['bytes'] / 1e6:.1f}")
    console.print(table)
    if args.episodes:
        ep_table = Table("#", "steps", "task", "operator", "success", "late", "missing", "dropped", "state")
        for i, e in enumerate(store.episodes):
            state = "DAMAGED: " + ", ".join(damaged[i]) if i in damaged else ", ".join(f for f in flagged if e.extra.get(f))
            ep_table.add_row(str(i), str(e.length), e.task, e.operator, str(e.success), str(sum(e.late_frames.values())),
                             str(sum(e.missing_frames.values())), str(e.extra.get("dropped_steps", "")), state or "ok")
        console.print(ep_table)
    return 0


def _verify(args: argparse.Namespace) -> int:
    import time

    from robot_stack.data.integrity import plural, ranges
    from robot_stack.data.store import EpisodeStore

    if args.repair:
        EpisodeStore(args.store, "a")  # recovers the journal, cuts uncommitted data, rewrites the index
    store = _open(args.store)
    start = time.monotonic()
    report = store.verify(progress=True)
    took = time.monotonic() - start
    for note in report.notes:
        print(f"note: {note}")
    head = (f"{args.store}: {store.n_episodes} episodes, {report.chunks} chunks ({report.bytes / 1e6:.1f} MB) "
            f"checked in {took:.1f} s")
    if report.ok:
        print(f"{head}: no damage")
        return 0
    damaged = report.damaged()
    print(f"{head}: {plural(len(damaged), 'damaged episode')} ({ranges(damaged)})")
    for line in report.summary():
        print(f"  {line}")
    for line in report.by_episode():
        print(f"  {line}")
    index_only = all(p.where == "meta/episode_ends" for p in report.problems)
    print("repair: " + (f"robot-stack data verify {args.store} --repair rewrites meta/episode_ends from the commit record"
                        if index_only else f"drop them: robot-stack data drop {args.store} {' '.join(ranges(damaged).split(', '))}"))
    return 1


def _video(args: argparse.Namespace) -> int:
    from robot_stack.data.ops import write_video

    store = _open(args.store)
    index = _index(store, args.episode)
    out = write_video(store, index, args.output or _default_output(args.store, index, ".mp4"), args.fps)
    print(f"wrote {out}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from robot_stack.data.ops import plot_episode

    store = _open(args.store)
    index = _index(store, args.episode)
    out = plot_episode(store, index, args.output or _default_output(args.store, index, ".png"))
    print(f"wrote {out}")
    return 0


def _drop(args: argparse.Namespace) -> int:
    from robot_stack.data.ops import drop_episodes, parse_episodes

    store = _open(args.store)
    episodes = parse_episodes(args.episodes, store.n_episodes)
    left = drop_episodes(args.store, episodes)
    print(f"dropped {len(episodes)} episodes ({', '.join(map(str, episodes))}); {left} left in {args.store}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from robot_stack.data.ops import merge_stores

    added = merge_stores(args.output, args.inputs)
    print(f"merged {added} episodes into {args.output} ({_open(args.output).n_episodes} episodes now)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from robot_stack.data.integrity import usable_episodes
    from robot_stack.data.ops import parse_episodes
    from robot_stack.errors import UserError

    if args.mcap is not None:
        if args.output is not None and args.output != args.mcap:
            raise UserError("give the output folder once (positional or --mcap)")
        args.output, args.format = args.mcap, "mcap"
    if args.output is None:
        raise UserError("missing the output folder (e.g. robot-stack data export STORE OUT --format lerobot)")
    store = _open(args.store)
    episodes = parse_episodes(args.episodes, store.n_episodes) if args.episodes else list(range(store.n_episodes))
    episodes = usable_episodes(store.verify(episodes=episodes, progress=True), episodes, skip_damaged=args.skip_damaged,
                               hint="--skip-damaged exports the other {n}")
    if args.format == "lerobot":
        from robot_stack.data.lerobot import export_lerobot

        r = export_lerobot(store, episodes, args.output, fps=args.fps, task=args.task, codec=args.video_codec)
        print(f"wrote LeRobotDataset v3.0 {args.output}: {r.episodes} episodes, {r.frames} frames, {r.videos} videos, "
              f"{r.bytes / 1e6:.1f} MB in {r.seconds:.1f} s ({r.frames / max(r.seconds, 1e-9):.0f} frames/s)")
        return 0
    if args.format == "zarr2":
        from robot_stack.data.zarr2 import export_zarr2

        z = export_zarr2(store, episodes, args.output)
        print(f"wrote zarr 2 replay buffer {args.output}: {z.episodes} episodes, {z.steps} steps, {z.bytes / 1e6:.1f} MB")
        return 0
    from robot_stack.data.export import export_mcap

    bags = export_mcap(store, episodes, args.output)
    print(f"wrote {len(bags)} rosbag2 (MCAP) folders under {args.output}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    store = _open(args.store)
    index = _index(store, args.episode)
    if args.ros:
        from robot_stack.data.publish import publish_episode

        report = publish_episode(store, index, speed=args.speed, wait_s=args.wait, force=args.force)
        counts = ", ".join(f"{k} {v}" for k, v in report.messages.items())
        print(f"published episode {index} in {report.duration_s:.1f} s ({report.subscribers} joint_states subscribers; "
              f"max {report.max_late_ms:.1f} ms late): {counts}")
    if args.ros and not (args.twin or args.compare or args.video):
        return 0
    import numpy as np
    from rich.console import Console

    from robot_stack.data import replay

    console = Console(soft_wrap=True)
    title = f"{args.store.name} episode {index}: twin replay"
    if args.compare:
        result = replay.compare(store, index, args.interpolation)
        console.print(replay.comparison_table(result, title))
        out = replay.plot_comparison(result, args.output or _default_output(args.store, index, "_compare.png"), title)
        run = result.raw
        console.print(f"wrote {out}")
    elif args.video:
        from robot_stack.data.ops import camera_names

        cams = [c.strip() for c in args.cameras.split(",")] if args.cameras else camera_names(store)
        run = replay.replay_video(store, index, args.video, cams, args.interpolation)
        console.print(f"wrote {args.video}")
    else:
        replayer = replay.TwinReplayer(store, index)
        try:
            run = replayer.run(args.interpolation)
        finally:
            replayer.close()
    arm = run.angular
    console.print(
        f"replayed {len(run.t)} steps ({run.t[-1]:.1f} s) in the twin ({run.interpolation}): "
        f"mean RMS joint error {np.degrees(run.rms[arm].mean()):.2f} deg, max {np.degrees(run.max_abs[arm].max()):.2f} deg; "
        f"task success in the twin {run.success} (recorded {run.recorded_success})"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    import time

    from robot_stack.errors import UserError

    fmt = args.format
    if fmt == "auto":
        bags = [(s / "metadata.yaml").exists() or any(s.glob("*/metadata.yaml")) for s in args.sources]
        fmt = "rosbag2" if all(bags) else "zarr"
    start = time.monotonic()
    if fmt == "zarr":
        from robot_stack.data.ops import import_replay_buffer

        if len(args.sources) != 1:
            raise UserError("a replay-buffer import takes one source zarr")
        added = import_replay_buffer(args.sources[0], args.output)
        print(f"imported {added} episodes into {args.output}")
        return 0
    from robot_stack.data.bag import BagImportConfig, import_rosbag2

    cameras = None if args.cameras is None else tuple(c.strip() for c in args.cameras.split(",") if c.strip())
    config = BagImportConfig(robot=args.robot, rate_hz=args.rate, latency_s=args.latency, tolerance_s=args.tolerance,
                             cameras=cameras, task=args.task, image_codec=args.image_codec)
    if args.rate is not None and args.rate <= 0 or args.latency < 0 or args.tolerance < 0:
        raise UserError("--rate must be > 0, --latency and --tolerance >= 0")
    added = import_rosbag2(args.sources, args.output, config)
    store = _open(args.output)
    steps = sum(store.episodes[i].length for i in added)
    seconds = time.monotonic() - start
    print(f"imported {len(added)} episodes ({steps} steps) into {args.output} in {seconds:.1f} s "
          f"({steps / max(seconds, 1e-9):.0f} steps/s); {store.n_episodes} episodes there now")
    return 0
