"""A local live source for ``predict --stream`` tests: FFmpeg's libraries (PyAV) remux an mp4
(H.264 + AAC) into MPEG-TS and send it at the clip's own pace (each packet when its time has
come, like ``ffmpeg -re``), to stdout (``-``) or to a URL (``tcp://127.0.0.1:PORT``, where ``predict --stream tcp://127.0.0.1:PORT?listen=1`` waits;
connected with retries until it listens).

    python tests/stream_source.py CLIP.mp4 DESTINATION [--loops N]
"""
from __future__ import annotations

import argparse
import socket
import sys
import time


def send(clip: str, destination: str, loops: int = 1) -> None:
    import av

    target = "pipe:1" if destination == "-" else destination
    if destination.startswith("tcp://"):  # FFmpeg connects only at the first write: connect here, with retries
        host, port = destination.removeprefix("tcp://").split("?")[0].rsplit(":", 1)
        for _ in range(600):  # the listening reader may not be up yet: try for a minute
            try:
                target = socket.create_connection((host, int(port))).makefile("wb", buffering=0)
                break
            except OSError:
                time.sleep(0.1)
    source = av.open(clip)
    with av.open(target, "w", format="mpegts", options={"flush_packets": "1"}) as out:  # no 32-KB bursts
        mapping = {s.index: out.add_stream_from_template(s) for s in source.streams if s.type in ("video", "audio")}
        print("sending", file=sys.stderr, flush=True)
        t0, offset, duration = time.monotonic(), 0.0, 0.0
        for loop in range(loops):
            source = av.open(clip) if loop else source
            last = 0.0
            for packet in source.demux(*[s for s in source.streams if s.index in mapping]):
                if packet.dts is None:
                    continue
                t = float(packet.dts * packet.time_base)
                last = max(last, t + float((packet.duration or 0) * packet.time_base))
                delay = t0 + offset + t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                shift = round(offset / packet.time_base)
                packet.dts += shift
                packet.pts = None if packet.pts is None else packet.pts + shift
                packet.stream = mapping[packet.stream.index]
                out.mux(packet)
            offset += last + 0.1  # the next loop starts after every stream's last packet
            duration = offset
        print(f"sent {duration:.2f} s", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("clip")
    p.add_argument("destination")
    p.add_argument("--loops", type=int, default=1)
    args = p.parse_args(argv)
    send(args.clip, args.destination, args.loops)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
