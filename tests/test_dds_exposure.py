"""By default the robot contract is reachable from this host only: every UDP socket of a node is bound
to 127.0.0.1 (the rest is shared memory); other machines are opt-in, by name (ROS_STATIC_PEERS)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from conftest import wait_for

from robot_stack.launcher import LaunchRunner
from robot_stack.resources import fastdds_profile, ros_environment

FILES = Path(__file__).resolve().parent / "launch_files"


def udp_binds(pid: int) -> list[str]:
    """'address:port' of every UDP socket the process holds (from /proc, as `ss -ulpn` shows them)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    binds = []
    for table in ("udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                address, port = fields[1].split(":")
                if table == "udp":
                    address = ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
                binds.append(f"{address}:{int(port, 16)}")
    return binds


def test_launched_nodes_bind_loopback_only_and_still_talk() -> None:
    """Two probes over DDS (one publishes, one echoes), started as a user would with
    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: they hear each other, and no socket is bound to 0.0.0.0
    or to a network interface (before, each node bound five UDP sockets on 0.0.0.0)."""
    buf = io.StringIO()
    with LaunchRunner(FILES / "probes.launch.xml", {"ns": f"exposure_{os.getpid()}"}, stdout=buf, stderr=buf) as runner:
        wait_for(lambda: "heard" in buf.getvalue(), 60, f"the listener hearing the talker; output:\n{buf.getvalue()}")
        pids = [p[-1] for p in runner.pids().values()]
        binds = {pid: udp_binds(pid) for pid in pids}
    assert all(binds.values()), binds
    assert all(b.startswith("127.0.0.1:") for found in binds.values() for b in found), binds


def test_named_peers_are_opt_in() -> None:
    base = {"PATH": os.defpath, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    local = ros_environment(base)
    assert local["FASTDDS_DEFAULT_PROFILES_FILE"] == str(fastdds_profile())
    assert local["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"  # the profile keeps it on this host
    remote = ros_environment({**base, "ROS_STATIC_PEERS": "gpubox;10.0.0.7"})
    assert remote["FASTDDS_DEFAULT_PROFILES_FILE"] == str(fastdds_profile(peers=True))
    assert remote["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"  # this host and the named peers only
    mine = ros_environment({**base, "FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my.xml"})
    assert mine["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/my.xml" and mine["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
